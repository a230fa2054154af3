"""A bf16 or int8 backbone under fp32 deltas: mixed batches still give each row its own task's answer, every
bias is added in fp32, the backbone holds fewer bytes, and the reference check keeps refusing what is wrong."""

from pathlib import Path

import pytest
import torch
from conftest import write_synthetic_glue

from bitfit_edu.core.biases import bias_census
from bitfit_edu.core.precision import cpu_name, native_bf16
from bitfit_edu.core.readout import load_classifier, load_tokenizer
from bitfit_edu.deploy import backbone_precision
from bitfit_edu.deploy.backbone_precision import REFERENCE_TOLERANCES, backbone_bytes, resolve
from bitfit_edu.deploy.serving import MultiTask, RowLinear, predict
from bitfit_edu.errors import BitFitError
from bitfit_edu.experiments.runs import RunConfig
from bitfit_edu.experiments.training import run

LOW = ("bf16", "int8")


@pytest.fixture(scope="module")
def deltas(tiny_model_dir, tmp_path_factory):
    """Tiny real BitFit runs: SST-2 (two labels) and STS-B (a regression), mean readout."""
    folder = tmp_path_factory.mktemp("precision")
    glue_dir = write_synthetic_glue(folder / "glue")
    paths = {}
    for task in ("sst2", "stsb"):
        config = RunConfig(model=tiny_model_dir, task=task, method="bitfit", epochs=2, batch_size=8,
                           train_eval_size=8, learning_rate=1e-2, readout="mean")
        paths[task] = folder / f"{task}.safetensors"
        run(config, glue_dir=glue_dir, progress=False, delta=paths[task])
    return paths


def server_of(tiny_model_dir, paths, precision):
    server = MultiTask(load_classifier(tiny_model_dir, 2, "mean", seed=3), precision=precision)
    server.add_many(list(paths.values()))
    return server


def batch_of(tiny_model_dir):
    texts = ["the cat sat on the mat", "a good film", "bad plot", "not a very good film is it", "dog", "the mat"]
    return dict(load_tokenizer(tiny_model_dir)(texts, padding=True, return_tensors="pt"))


@pytest.mark.parametrize("precision", LOW)
def test_a_mixed_batch_on_a_low_precision_backbone_gives_each_row_its_tasks_answer(deltas, tiny_model_dir,
                                                                                     precision):
    exact, low = server_of(tiny_model_dir, deltas, "fp32"), server_of(tiny_model_dir, deltas, precision)
    batch = batch_of(tiny_model_dir)
    tasks = ["sst2", "stsb"] * 3
    mixed = low.mixed_logits(batch, tasks)
    for task in deltas:
        low.switch(task)
        exact.switch(task)
        alone, reference = low.logits(batch), exact.logits(batch)
        for row in (r for r, t in enumerate(tasks) if t == task):
            # bf16: the same products in both passes; int8: the batch's activation scale moves a little
            assert (mixed[row] - alone[row]).abs().max() <= (1e-5 if precision == "bf16" else 0.05)
            assert 0 < (alone[row] - reference[row]).abs().max() <= REFERENCE_TOLERANCES[precision]


@pytest.mark.parametrize("precision", LOW)
@pytest.mark.parametrize("group", ["b_m2", "b_m1"])  # b_m2's sum goes into a bf16 product; b_m1's into LayerNorm
def test_the_biases_stay_fp32_and_are_added_in_fp32(deltas, tiny_model_dir, precision, group):
    server = server_of(tiny_model_dir, deltas, precision)
    server.switch("sst2")
    name = next(term.name for term in bias_census(server.model) if term.group == group)
    linear = server.sites[name]
    assert isinstance(linear, RowLinear) and linear.products is not None and linear.weight.device.type == "meta"
    assert linear.bias.dtype == server.bias_rows.dtype == server.head_weights.dtype == torch.float32
    x = torch.randn(2, 5, linear.in_features)
    product = linear.products(x, torch.zeros(linear.out_features))  # W x alone, in the backbone's format
    rounded = precision == "bf16" and group == "b_m2"
    assert linear(x).dtype == (torch.bfloat16 if rounded else torch.float32)

    def in_fp32(bias):  # the fp32 sum of the product and the bias, rounded where the next product rounds anyway
        total = product.float() + bias
        return total.bfloat16() if rounded else total

    assert torch.equal(linear(x), in_fp32(linear.bias))
    server.rows.index = torch.tensor([server.delta(task).row for task in ["sst2", "stsb"]])
    try:
        per_row = linear(x)
    finally:
        server.rows.index = None
    for row, task in enumerate(["sst2", "stsb"]):
        assert torch.equal(per_row[row], in_fp32(server.tables[name][server.delta(task).row])[row])


def test_a_lower_precision_backbone_holds_fewer_bytes(tiny_model_dir):
    held = {p: backbone_bytes(MultiTask(load_classifier(tiny_model_dir, 2, "mean"), precision=p).model)
            for p in ("fp32", *LOW)}
    assert held["int8"] < held["bf16"] < held["fp32"]


@pytest.mark.parametrize("precision", LOW)
def test_an_altered_delta_is_still_refused_on_a_low_precision_backbone(deltas, tiny_model_dir, tmp_path,
                                                                        precision, monkeypatch):
    server = server_of(tiny_model_dir, {"sst2": deltas["sst2"]}, precision)
    monkeypatch.setattr(server, "tolerance", 1e-7)  # tighter than the format's rounding: the check must bite
    with pytest.raises(BitFitError, match=f"allowed in {precision}"):
        server.add(deltas["stsb"])
    assert list(server.tasks) == ["sst2"]


def test_predict_answers_on_every_precision(deltas, tiny_model_dir):
    texts = ["a good film", "bad plot", "the cat sat on the mat"]
    answers = {p: predict(server_of(tiny_model_dir, deltas, p), texts, ["sst2"]) for p in ("fp32", *LOW)}
    for precision in LOW:
        assert list(answers[precision]["text"]) == texts
        gap = (answers[precision]["value"] - answers["fp32"]["value"]).abs().max()
        assert gap <= REFERENCE_TOLERANCES[precision]  # a probability moves less than the logits it comes from


def test_auto_is_bf16_exactly_where_the_machine_has_bf16_kernels(monkeypatch):
    assert resolve("auto") == ("bf16" if native_bf16() else "fp32")
    monkeypatch.setattr(backbone_precision, "native_bf16", lambda: False)
    assert resolve("auto") == "fp32"
    with pytest.raises(BitFitError, match="unknown precision .fp16.; choose one of: fp32, bf16, int8, auto"):
        resolve("fp16")


def test_bf16_products_pad_to_few_shapes_and_cost_at_most_an_eighth_more_rows():
    sizes = {backbone_precision.bucket(rows) for rows in range(1, 4097)}
    assert len(sizes) == 8 + 8 * 6  # multiples of 8 up to 64 rows, then 8 sizes in each doubling to 4,096
    for rows in range(1, 4097):
        assert rows <= backbone_precision.bucket(rows) <= max(rows + 7, rows * 9 / 8)


@pytest.mark.parametrize("round_sum", [False, True])
@pytest.mark.parametrize("mixed", [False, True])
def test_bf16_products_taken_in_padded_chunks_equal_one_product(monkeypatch, round_sum, mixed):
    monkeypatch.setattr(backbone_precision, "CHUNK_ROWS", 16)  # 3 sequences of 5 tokens a chunk, padded to 16 rows
    weight, x = torch.randn(12, 7), torch.randn(10, 5, 7)
    bias = torch.randn(10, 1, 12) if mixed else torch.randn(12)
    products = backbone_precision.Bf16Products(weight, backbone_precision.SharedBf16Input(), round_sum)
    whole = (x.bfloat16().reshape(-1, 7) @ weight.bfloat16().t()).view(10, 5, 12).float() + bias
    found = products(x, bias)
    assert found.shape == (10, 5, 12) and found.dtype == (torch.bfloat16 if round_sum else torch.float32)
    torch.testing.assert_close(found.float(), whole.bfloat16().float() if round_sum else whole, rtol=1 / 64, atol=1e-5)


def test_the_machines_peak_and_cpu_are_named_for_the_records():
    assert backbone_precision.peak_gflops("fp32", repeats=1) > 0
    if Path("/proc/cpuinfo").is_file():  # Linux: the family and model numbers that tell generations apart
        assert ", family " in cpu_name() and ", model " in cpu_name()
