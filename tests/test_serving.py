"""One backbone, many tasks: switching gives each fine-tuned model's logits, and a mixed-task batch answered
in one forward pass gives each row what its own task's model gives it."""

import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import write_synthetic_glue

from bitfit_edu.core.readout import load_classifier, load_tokenizer
from bitfit_edu.deploy import serving
from bitfit_edu.deploy.deltas import read_delta, reference_gap
from bitfit_edu.deploy.serving import MultiTask, encode_rows, length_groups, predict
from bitfit_edu.deploy.throughput import delta_table, examples_per_second, mixed_batch_gap, switch_milliseconds
from bitfit_edu.errors import BitFitError
from bitfit_edu.experiments.runs import RunConfig
from bitfit_edu.experiments.training import run

TASKS = {"rte": ("bitfit", None), "stsb": ("bitfit", ("b_q", "b_m2")), "sst2": ("frozen", None)}


@pytest.fixture(scope="module", params=["mean", "cls_pooler"])
def deltas(request, tiny_model_dir, tmp_path_factory):
    """Three tiny real runs of one readout: two labels (BitFit), a regression (b_q + b_m2), a head alone."""
    folder = tmp_path_factory.mktemp(f"serving-{request.param}")
    glue_dir = write_synthetic_glue(folder / "glue")
    paths = {}
    for task, (method, groups) in TASKS.items():
        config = RunConfig(model=tiny_model_dir, task=task, method=method, groups=groups, epochs=2, batch_size=8,
                           train_eval_size=8, learning_rate=1e-2, readout=request.param)
        paths[task] = folder / f"{task}.safetensors"
        run(config, glue_dir=glue_dir, progress=False, delta=paths[task])
    return request.param, paths


def served(tiny_model_dir, readout, paths):
    server = MultiTask(load_classifier(tiny_model_dir, 2, readout, seed=7))
    for path in paths.values():
        server.add(path)
    return server


def test_switching_gives_each_fine_tuned_models_logits(deltas, tiny_model_dir):
    readout, paths = deltas
    server = served(tiny_model_dir, readout, paths)
    for task in [*TASKS, *reversed(TASKS)]:  # there and back: a switch leaves nothing of the previous task
        server.switch(task)
        assert reference_gap(server.model, read_delta(paths[task])[0].reference) <= 1e-6


def mixed_batch(tiny_model_dir):
    tokenizer = load_tokenizer(tiny_model_dir)
    pairs = [("the cat sat", "a dog ran"), ("big red film", "bad plot"), ("the mat", "a very good film is"),
             ("not good", "very bad"), ("cat", "dog sat on the mat"), ("a", "the")]
    return tokenizer([a for a, _ in pairs], [b for _, b in pairs], padding=True, return_tensors="pt")


def test_a_mixed_batch_matches_the_per_task_forwards(deltas, tiny_model_dir):
    readout, paths = deltas
    server = served(tiny_model_dir, readout, paths)
    batch = mixed_batch(tiny_model_dir)
    tasks = ["rte", "stsb", "sst2", "stsb", "rte", "sst2"]
    mixed = server.mixed_logits(batch, tasks)
    for task in TASKS:
        server.switch(task)
        alone = server.logits(batch)
        for row, row_task in enumerate(tasks):
            if row_task == task:
                assert mixed[row].shape == alone[row].shape
                assert (mixed[row] - alone[row]).abs().max() <= 1e-5
    assert [len(logits) for logits in mixed] == [2, 1, 2, 1, 2, 2]  # STS-B is a regression


def test_a_large_batch_answered_in_parts_gives_what_one_pass_gives(deltas, tiny_model_dir, monkeypatch):
    readout, paths = deltas
    server = served(tiny_model_dir, readout, paths)
    batch, tasks = mixed_batch(tiny_model_dir), ["rte", "stsb", "sst2", "stsb", "rte", "sst2"]
    server.switch("sst2")
    whole, mixed = server.logits(batch), server.mixed_logits(batch, tasks)
    width = batch["input_ids"].shape[1]
    monkeypatch.setattr(serving, "PART_TOKENS", 2 * width + 1)  # parts of 2 rows: 3 passes
    assert [part.stop - part.start for part in serving.parts(batch)] == [2, 2, 2]
    torch.testing.assert_close(server.logits(batch), whole, atol=1e-5, rtol=0)
    for row, logits in enumerate(server.mixed_logits(batch, tasks)):
        torch.testing.assert_close(logits, mixed[row], atol=1e-5, rtol=0)


def test_a_mixed_batch_copies_no_weight_matrix_and_restores_the_backbone(deltas, tiny_model_dir):
    readout, paths = deltas
    server = served(tiny_model_dir, readout, paths)
    modules_before = dict(server.model.named_modules())
    weights = {n: p.data_ptr() for n, p in server.model.named_parameters() if not n.endswith(".bias")}
    server.mixed_logits(mixed_batch(tiny_model_dir), ["rte"] * 3 + ["stsb"] * 3)
    assert dict(server.model.named_modules()) == modules_before
    assert {n: p.data_ptr() for n, p in server.model.named_parameters() if not n.endswith(".bias")} == weights


def test_serving_mistakes_get_clear_errors(deltas, tiny_model_dir):
    readout, paths = deltas
    server = served(tiny_model_dir, readout, paths)
    with pytest.raises(BitFitError, match="a task named 'rte' is loaded already"):
        server.add(paths["rte"])
    with pytest.raises(BitFitError, match="a task named 'twin' comes twice among the deltas added"):
        server.add_many([paths["sst2"], paths["sst2"]], ["twin", "twin"])
    with pytest.raises(BitFitError, match="no task 'cola' loaded; loaded: rte, stsb, sst2"):
        server.switch("cola")
    with pytest.raises(BitFitError, match="2 task names for a batch of 6 rows"):
        server.mixed_logits(mixed_batch(tiny_model_dir), ["rte", "stsb"])
    fresh = MultiTask(load_classifier(tiny_model_dir, 2, readout))
    with pytest.raises(BitFitError, match="no task is switched in"):
        fresh.logits(mixed_batch(tiny_model_dir))
    assert torch.is_tensor(server.mixed_logits(mixed_batch(tiny_model_dir), ["rte"] * 6)[0])


def test_the_deployment_helpers_report_each_task_and_a_mixed_batch(deltas, tiny_model_dir):
    readout, paths = deltas
    server = served(tiny_model_dir, readout, paths)
    table = delta_table(server)
    assert list(table.index) == list(TASKS) and table.loc["sst2", "method"] == "Frozen"
    assert table.loc["stsb", "numbers"] < table.loc["rte", "numbers"]  # b_q + b_m2 against every bias
    assert (table["max |Δ logit| vs fine-tuned"] <= 1e-6).all()
    rows = [("the cat sat",), ("a dog ran", "the mat"), ("big film", "bad plot"), ("very good",)]
    batch = encode_rows(load_tokenizer(tiny_model_dir), rows)  # single sentences and pairs in one batch
    assert batch["input_ids"].shape[0] == 4
    assert mixed_batch_gap(server, batch, ["sst2", "rte", "stsb", "sst2"]) <= 1e-5
    answers = predict(server, ["the cat sat ||| a dog ran"], tasks=["rte", "stsb"])
    assert list(answers["task"]) == ["rte", "stsb"] and answers["answer"].iloc[1] == "score"
    assert switch_milliseconds(server, repeats=10) > 0
    assert examples_per_second(server, batch, repeats=2) > 0
    assert examples_per_second(server, batch, ["sst2", "rte", "stsb", "sst2"], repeats=2) > 0


def test_a_server_refuses_a_tampered_delta_and_stays_as_it_was(deltas, tiny_model_dir, tmp_path, monkeypatch):
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    from bitfit_edu.deploy.deltas import MANIFEST_KEY

    readout, paths = deltas
    server = served(tiny_model_dir, readout, {"rte": paths["rte"]})
    server.switch("rte")
    before = {n: p.detach().clone() for n, p in server.model.named_parameters()}
    with safe_open(paths["rte"], framework="pt") as file:
        manifest = json.loads(file.metadata()[MANIFEST_KEY])
        tensors = {n: file.get_tensor(n) for n in file.keys()}
    tensors["classifier.bias"] += 0.5
    manifest.update(format="bitfit_edu.delta/1", content_sha256=None)  # first format, trusted: the logits must tell
    monkeypatch.setenv("BITFIT_EDU_TRUST_UNSIGNED_DELTAS", "1")
    tampered = tmp_path / "tampered.safetensors"
    save_file(tensors, tampered, metadata={MANIFEST_KEY: json.dumps(manifest)})
    with pytest.raises(BitFitError, match="gives logits .* away from those the fine-tuned model gave"):
        server.add(tampered, name="tampered")
    assert list(server.tasks) == ["rte"] and server.current == "rte"
    assert all(torch.equal(before[n], p) for n, p in server.model.named_parameters())
    assert server.add(paths["sst2"]) == "sst2" and server.delta("sst2").row == 1  # the refused row, reused


def test_added_tasks_appear_together_once_checked_in_a_new_dict(deltas, tiny_model_dir, monkeypatch):
    """The service reads ``tasks`` in its event loop while a scan adds deltas in a model worker: the reader
    must never meet a task whose checks are running, nor a dict that changes under it."""
    readout, paths = deltas
    server = served(tiny_model_dir, readout, {"rte": paths["rte"]})
    held, seen = server.tasks, []
    check = MultiTask._check_references

    def watched(self, checking, *args, **kwargs):
        seen.append((sorted(self.tasks), sorted(checking)))
        return check(self, checking, *args, **kwargs)

    monkeypatch.setattr(MultiTask, "_check_references", watched)
    assert server.add_many([paths["sst2"], paths["stsb"]]) == ["sst2", "stsb"]
    assert seen == [(["rte"], ["sst2", "stsb"])] and list(held) == ["rte"]
    assert list(server.tasks) == ["rte", "sst2", "stsb"]


def test_many_derived_tasks_each_row_its_own_task_match_their_own_models(deltas, tiny_model_dir, tmp_path):
    """Scale: 40 tasks derived from one delta by small perturbations, each row of the batch its own task."""
    from bitfit_edu.deploy.deltas import derived_delta

    readout, paths = deltas
    manifest, _ = read_delta(paths["rte"])
    model = load_classifier(tiny_model_dir, manifest.num_labels, readout, seed=7)
    derived = [derived_delta(model, paths["rte"], tmp_path / f"task{k}.safetensors", seed=k) for k in range(40)]
    server = MultiTask(load_classifier(tiny_model_dir, 2, readout, seed=7), capacity=2)  # grows as tasks arrive
    names = [server.add(path, name=f"task{k}") for k, path in enumerate(derived)]
    assert server.bias_rows.shape[0] >= 40 and server.head_biases.shape[0] >= 40
    assert server.tables[server.bias_names[0]].shape[0] >= 40
    tokenizer = load_tokenizer(tiny_model_dir)
    batch = tokenizer([f"sentence number {k} about a cat" for k in range(40)],
                      [f"a dog ran {k} times" for k in range(40)], padding=True, return_tensors="pt")
    mixed = server.mixed_logits(dict(batch), names)
    for row in (0, 7, 23, 39):
        server.switch(names[row])
        alone = server.logits({k: v[row:row + 1] for k, v in batch.items()})
        assert (mixed[row] - alone[0]).abs().max() <= 1e-5
    assert len({round(float(m[0]), 6) for m in mixed}) > 1, "the derived tasks differ"


def test_rows_are_grouped_by_length_when_padding_costs_more_than_a_pass():
    lengths = [40, 8, 9, 41, 10, 39]
    assert length_groups(lengths, call_cost_tokens=10) == [[1, 2, 4], [5, 0, 3]]  # 3*10 + 3*41 + 2 passes
    assert length_groups(lengths, call_cost_tokens=1000) == [[1, 2, 4, 5, 0, 3]]  # one pass: padding is cheaper
    assert length_groups([12] * 5, call_cost_tokens=0) == [[0, 1, 2, 3, 4]]  # nothing to save: one pass
    assert sorted(i for group in length_groups([5, 3, 30, 2, 17], 7) for i in group) == [0, 1, 2, 3, 4]


FREED_BLOCK = """
import ctypes, sys
from bitfit_edu.deploy.memory import give_large_blocks_own_pages, return_freed_memory

libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_void_p]

def resident_bytes():
    line = next(l for l in open("/proc/self/status") if l.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024

libc.free(libc.malloc(16 << 20))  # freeing a 16 MB block raises glibc's threshold for blocks of their own pages
if sys.argv[1] == "own pages":
    give_large_blocks_own_pages()
block = libc.malloc(8 << 20)
ctypes.memset(block, 1, 8 << 20)
held = resident_bytes()
libc.free(block)
if sys.argv[1] == "trimmed":
    return_freed_memory()
print(held - resident_bytes() > 4 << 20)
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists() or platform.libc_ver()[0] != "glibc",
                    reason="glibc and /proc only")
@pytest.mark.parametrize("mode,returned", [("left alone", False), ("own pages", True), ("trimmed", True)])
def test_a_freed_batch_sized_block_goes_back_to_the_system_when_trimmed_or_given_its_own_pages(mode, returned):
    """What keeps the service's memory flat (``serve --memory-release trim`` or ``mmap``): left alone, glibc keeps
    a freed 8 MB block (a batch's activations) in the process."""
    found = subprocess.run([sys.executable, "-c", FREED_BLOCK, mode], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == str(returned)


@pytest.mark.parametrize("memory_release,trimmed_after", [
    ("glibc", []), ("mmap", []), ("trim", list(range(1, 201))), ("periodic", list(range(16, 201, 16)))])
def test_the_service_trims_after_each_batch_every_16th_or_never(memory_release, trimmed_after):
    """``serve --memory-release``: "trim" hands freed memory back after every batch, "periodic" after every
    16th, "glibc" and "mmap" never (they leave it to glibc or to the pages of their own)."""
    from bitfit_edu.deploy.memory import trims_after

    assert [batches for batches in range(1, 201) if trims_after(batches, memory_release)] == trimmed_after


def test_predict_answers_a_long_list_in_bounded_batches(deltas, tiny_model_dir, monkeypatch):
    from bitfit_edu.deploy import serving

    readout, paths = deltas
    server = served(tiny_model_dir, readout, {"rte": paths["rte"]})
    sizes, logits = [], server.logits
    monkeypatch.setattr(server, "logits", lambda batch: sizes.append(len(batch["input_ids"])) or logits(batch))
    monkeypatch.setattr(serving, "PREDICT_BATCH", 3)
    answers = serving.predict(server, [f"sentence {k} ||| another {k}" for k in range(8)])
    assert sizes == [3, 3, 2] and len(answers) == 8
