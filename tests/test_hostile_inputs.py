"""Hostile inputs and faults: each ends in one clear error or in correct behaviour, never a wrong record.

The cases, so that the next person can extend the list (issue 24 of the tracker):

| input or fault                                   | behaviour                                              |
|--------------------------------------------------|--------------------------------------------------------|
| `--learning-rate inf`                            | error: learning_rate must be a finite number           |
| loss or a metric becomes nan/inf during training | error naming the epoch; no record written              |
| STS-B score `nan` or outside [0, 5]              | error naming file and line                             |
| `--results` names a file                         | error before any training                              |
| a write fails after training (full disk)         | record kept in the temporary folder, error says where  |
| a write fails or is interrupted                  | no partial .tmp file left behind                       |
| the same run listed twice (`rte,RTE`, `0,0`)     | trained once                                           |
| a second worker on a run another one has claimed | skipped; a claim whose process died is taken over      |
| a record with the schema tag but fields missing  | error naming the file                                  |
| a 0-byte, header-only or non-UTF-8 TSV           | error naming the file                                  |
| `train.tsv` is a folder; a folder named `x.json` | error saying it is a folder                            |
| `--seed -1`, `--seed 4294967296`                 | error: the seed's range                                |
| `--seeds a`, `--seeds ""`, `--seeds ,`           | error: not whole numbers / names nothing               |
| `--tasks ,`, `--groups ""`, `--worker ""`        | error: names nothing                                   |
| `--method bitfit:b_q --groups b_m2`              | error: the method already names its groups             |
| `params --num-labels 0`                          | error                                                  |
| `--groups all,b_q`                               | error: 'all' goes alone                                |
| `grid --experiment size_curve` in a profile without sizes for it | error: no runs in that profile     |
| `--groups b_pooler` with mean pooling            | error: trains nothing in the encoder                   |
| Ctrl-C                                           | one line: finished runs are kept, run again to resume; exit 130 |
| SIGTERM during a `run` or `grid` (real process)  | one line, as Ctrl-C; the run's lock released; exit 143  |
| SIGTERM whose exception a finalizer swallowed    | raised again after the next step, or before the next run |
| the same run on a private copy of the data       | another run id (a digest of the files read)            |
| `--train-size 100000` on a 60-row file           | error: more than the file's examples                   |
| ELECTRA-small (embeddings narrower than layers)  | error: plainly not supported (ELECTRA-base/large are)  |

The multi-process path: `test_torchrun.py`.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from synthetic_records import fake_record, stored_record

from bitfit_edu import commands, errors
from bitfit_edu.cli import main
from bitfit_edu.data.glue import load_split
from bitfit_edu.errors import BitFitError
from bitfit_edu.experiments import training
from bitfit_edu.experiments.results import ResultStore
from bitfit_edu.experiments.runner import run_grid, then_the_others, worker_runs
from bitfit_edu.experiments.runs import RunConfig
from bitfit_edu.experiments.training import diverged, run


def config(**overrides) -> RunConfig:
    return RunConfig(**{"model": "m", "task": "rte", "method": "bitfit", **overrides}).validated()


@pytest.mark.parametrize("argv,message", [
    (["run", "--task", "rte", "--method", "bitfit", "--learning-rate", "inf"], "learning_rate must be a finite number"),
    (["run", "--task", "rte", "--method", "bitfit", "--seed", "-1"], "seed must be between 0 and 2\\*\\*32 - 1"),
    (["run", "--task", "rte", "--method", "bitfit", "--seed", "4294967296"], "seed must be between"),
    (["run", "--task", "rte", "--method", "bitfit", "--groups", ""], "--groups '' names nothing"),
    (["run", "--task", "rte", "--method", "bitfit", "--groups", ","], "--groups ',' names nothing"),
    (["run", "--task", "rte", "--method", "bitfit:b_q", "--groups", "b_m2"], "already names its bias groups"),
    (["grid", "--experiment", "main", "--seeds", "a"], "--seeds 'a': give whole numbers"),
    (["grid", "--experiment", "main", "--seeds", ""], "--seeds '' names nothing"),
    (["grid", "--experiment", "main", "--seeds", ","], "--seeds ',' names nothing"),
    (["grid", "--experiment", "main", "--tasks", ","], "--tasks ',' names nothing"),
    (["grid", "--experiment", "main", "--worker", ""], "--worker '': write it as K/N"),
    (["params", "--model", "bert-base-cased", "--num-labels", "0"], "--num-labels must be at least 1"),
    (["run", "--task", "rte", "--method", "bitfit", "--groups", "all,b_q"], "'all' already means every group"),
    (["grid", "--experiment", "size_curve", "--profile", "smoke", "--dry-run"], "has no runs in profile 'smoke'"),
])
def test_bad_arguments_are_one_clear_error(argv, message, capsys, tmp_path):
    assert main([*argv, *(["--results", str(tmp_path)] if argv[0] in ("run", "grid") else [])]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert re.search(message, err), err


def test_duplicate_tasks_and_seeds_name_one_run_each(capsys, tmp_path):
    argv = ["grid", "--experiment", "main", "--profile", "smoke", "--results", str(tmp_path), "--dry-run"]
    assert main([*argv, "--tasks", "rte,RTE", "--seeds", "0,0"]) == 0
    assert "main on profile smoke: 3 runs" in capsys.readouterr().out  # Full-FT, BitFit, Frozen on RTE, seed 0


def test_a_run_listed_twice_trains_once(tmp_path):
    trained = []
    report = run_grid([config(), config(task="RTE")], ResultStore(tmp_path),
                      run_fn=lambda c, **_: trained.append(c) or fake_record(c), progress=False)
    assert len(trained) == 1 and len(report.trained) == 1


def test_a_claimed_run_is_left_to_its_worker_and_a_stale_claim_is_taken_over(tmp_path):
    store, trained = ResultStore(tmp_path), []
    lock = store.path(config()).with_suffix(".lock")
    lock.parent.mkdir(parents=True)
    lock.write_text(str(os.getpid()))  # a live process holds it
    train = dict(run_fn=lambda c, **_: trained.append(c) or fake_record(c), progress=False)
    held = run_grid([config()], store, **train)
    assert held.trained == [] and len(held.held) == 1 and not trained
    lock.write_text("999999999")  # no such process: the claim is stale
    assert len(run_grid([config()], store, **train).trained) == 1 and not lock.exists()


def test_a_worker_whose_share_is_done_helps_with_the_rest_in_the_grids_order(tmp_path):
    """Worker 1 of 2 trains its runs (0, 2), then the others' in the grid's order, most important first (1, then
    3), and skips a run the other worker finished meanwhile."""
    grid = [config(seed=seed) for seed in range(4)]
    store, trained = ResultStore(tmp_path), []
    mine = worker_runs(grid, 1, 2)
    assert [c.seed for c in then_the_others(grid, mine)] == [0, 2, 1, 3]

    def train(c, **_):
        trained.append(c.seed)
        if c.seed == 2:
            store.write(fake_record(grid[1]))  # the other worker finishes seed 1 meanwhile
        return fake_record(c)

    run_grid(then_the_others(grid, mine), store, run_fn=train, progress=False)
    assert trained == [0, 2, 3]


def test_non_finite_values_are_found_where_they_appear():
    epochs = [{"epoch": 1, "train_loss": 0.7, "dev": {"accuracy": 0.5, "score": 0.5, "loss": 0.7}},
              {"epoch": 2, "train_loss": float("nan"), "dev": {"accuracy": 0.6, "score": float("inf"), "loss": 0.6}}]
    assert diverged(epochs[:1]) is None
    assert diverged(epochs) == "epoch 2: training loss, dev score"


def test_a_diverged_run_writes_no_record(tiny_model_dir, glue_dir, tmp_path, monkeypatch):
    real = training.epoch_records

    def nan_scores(*args, **kwargs):
        epochs = real(*args, **kwargs)
        epochs[-1]["dev"]["score"] = float("nan")
        return epochs

    monkeypatch.setattr(training, "epoch_records", nan_scores)
    store = ResultStore(tmp_path / "results")
    smoke = config(model=tiny_model_dir, readout="mean", epochs=1, train_size=16, train_eval_size=8, dev_size=8)
    with pytest.raises(BitFitError, match=r"diverged \(epoch 1: dev score not a finite number\): no record"):
        run_grid([smoke], store, glue_dir=glue_dir, progress=False)
    assert store.records() == []


def test_bias_groups_the_readout_never_reads_are_refused(tiny_model_dir, glue_dir):
    pooler_only = config(model=tiny_model_dir, readout="mean", groups=("b_pooler",), epochs=1, train_size=8)
    with pytest.raises(BitFitError, match="trains nothing in the encoder with the mean readout"):
        run(pooler_only, glue_dir=glue_dir, progress=False)


def test_an_unwritable_results_folder_stops_before_training(tmp_path):
    (tmp_path / "results").write_text("a file, not a folder")

    def must_not_train(config, **kwargs):
        raise AssertionError("trained although the records could not be written")

    with pytest.raises(BitFitError, match="cannot write run records to .*results"):
        run_grid([config()], ResultStore(tmp_path / "results"), run_fn=must_not_train, progress=False)


def test_a_failed_write_keeps_the_finished_record(tmp_path, monkeypatch):
    store = ResultStore(tmp_path)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "kept"))
    (tmp_path / "kept").mkdir()

    def disk_full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(BitFitError, match=r"No space left on device\); the finished record is kept in .*kept"):
        store.write(fake_record(config()))
    kept = tmp_path / "kept" / store.path(config()).name
    assert json.loads(kept.read_text())["run_id"] == config().run_id
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_record_with_missing_fields_names_its_file(tmp_path):
    store = ResultStore(tmp_path)
    record = stored_record(config())
    del record["epochs"]
    store.path(config()).parent.mkdir(parents=True)
    store.path(config()).write_text(json.dumps(record))
    with pytest.raises(BitFitError, match=r"incomplete run record .*\.json: no epochs"):
        store.finished(config())
    store.path(config()).unlink()
    store.path(config()).mkdir()
    with pytest.raises(BitFitError, match="is a folder named like a run record"):
        store.records()


@pytest.mark.parametrize("content,message", [
    (b"", "no data rows \\(the file is empty\\)"),
    (b"index\tsentence1\tsentence2\tlabel\n", "no data rows \\(the file is a header only\\)"),
    (b"index\tsentence1\tsentence2\tlabel\n0\ta\xff\tb\tentailment\n", "not UTF-8 text"),
])
def test_bad_data_files_name_the_file(content, message, glue_dir):
    (glue_dir / "RTE" / "train.tsv").write_bytes(content)
    with pytest.raises(BitFitError, match=rf"RTE/train.tsv: {message}"):
        load_split("rte", "train", glue_dir)


def test_a_folder_where_a_data_file_belongs(glue_dir):
    (glue_dir / "RTE" / "train.tsv").unlink()
    (glue_dir / "RTE" / "train.tsv").mkdir()
    with pytest.raises(BitFitError, match="train.tsv is a folder, not a file"):
        load_split("rte", "train", glue_dir)


@pytest.mark.parametrize("score", ["nan", "7.5", "-1"])
def test_stsb_scores_outside_their_range_are_refused(score, glue_dir):
    path = glue_dir / "STS-B" / "train.tsv"
    lines = path.read_text().splitlines()
    lines[1] = "\t".join(lines[1].split("\t")[:-1] + [score])
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(BitFitError, match=rf"train.tsv, line 2: label '{score}' is outside \[0, 5\]"):
        load_split("stsb", "train", glue_dir)


def test_ctrl_c_is_one_line_that_says_how_to_resume(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(commands, "cmd_report", interrupted)
    assert main(["report"]) == 130
    assert capsys.readouterr().err.strip() == ("interrupted: every run that finished is kept; run the same command "
                                               "again to resume (finished runs are skipped)")


@pytest.mark.parametrize("command", [["run", "--task", "rte", "--method", "bitfit", "--epochs", "30"],
                                     ["grid", "--experiment", "main"]])
def test_sigterm_stops_a_run_like_ctrl_c_and_releases_its_lock(shared_glue_dir, tmp_path, command):
    """A scheduler, `docker stop` or Binder's culler sends SIGTERM: one line, the lock gone, nothing half-written."""
    argv = [sys.executable, "-m", "bitfit_edu", *command, "--profile", "smoke", "--glue-dir", str(shared_glue_dir),
            "--results", str(tmp_path)]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"})
    deadline = time.time() + 180
    while not list(tmp_path.rglob("*.lock")) and process.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert list(tmp_path.rglob("*.lock")), "the run never claimed its lock"
    assert process.poll() is None, "finished before the signal could be sent"
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    assert "terminated (SIGTERM): every run that finished is kept" in err and "Traceback" not in err
    assert not list(tmp_path.rglob("*.lock")) and not list(tmp_path.rglob("*.tmp"))


@pytest.fixture
def sigterm_came():
    """SIGTERM arrived and its ``Terminated`` was lost where it landed (a finalizer printed and dropped it)."""
    errors.TERMINATION.set()
    yield
    errors.TERMINATION.clear()


def test_a_lost_sigterm_stops_the_grid_before_its_next_run(sigterm_came, tmp_path):
    trained = []
    with pytest.raises(errors.Terminated):
        run_grid([config(seed=0), config(seed=1)], ResultStore(tmp_path),
                 run_fn=lambda c, **kwargs: trained.append(c) or fake_record(c))
    assert trained == [] and not list(tmp_path.rglob("*.lock"))


class Finalized:
    """An object whose finalizer raises ``error``, as if a signal had landed there."""

    def __init__(self, error: BaseException):
        self.error = error

    def __del__(self):
        raise self.error


def test_a_sigterm_lost_in_a_finalizer_prints_no_traceback(capsys):
    errors.stop_on_sigterm()
    try:
        Finalized(errors.Terminated())
        Finalized(ZeroDivisionError("other errors are reported as Python reports them"))
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        sys.unraisablehook = sys.__unraisablehook__
    err = capsys.readouterr().err
    assert "other errors are reported" in err and "Terminated" not in err


def test_a_lost_sigterm_stops_training_after_the_step(sigterm_came):
    with pytest.raises(errors.Terminated):
        training.StopWhenTerminated().on_step_end(None, None, None)


def test_an_interrupted_write_leaves_no_partial_file(tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(json, "dump", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ResultStore(tmp_path).write(fake_record(config()))
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_a_run_on_other_data_is_another_run(shared_glue_dir, tmp_path):
    """A private 60-row copy of RTE and the real RTE give two run ids, not one 'already finished'."""
    private = tmp_path / "glue"
    (private / "RTE").mkdir(parents=True)
    (private / "RTE" / "dev.tsv").write_bytes((shared_glue_dir / "RTE" / "dev.tsv").read_bytes())
    rows = (shared_glue_dir / "RTE" / "train.tsv").read_text().splitlines(keepends=True)[:61]
    (private / "RTE" / "train.tsv").write_text("".join(rows))
    official, copy = config().with_data(shared_glue_dir), config().with_data(private)
    assert official.data is None and official.run_id == config().run_id  # committed ids stay as they were
    assert copy.data is not None and copy.run_id != official.run_id
    assert copy.as_dict()["data"] == copy.data and "data" not in official.as_dict()


def test_a_train_size_larger_than_the_data_is_refused(glue_dir):
    too_many = config(model="unused", train_size=100_000)
    with pytest.raises(BitFitError, match="train_size 100,000 is more than the 24 training examples of RTE"):
        training.load_data(too_many, glue_dir)


def test_electra_small_is_said_plainly_to_be_unsupported():
    torch = pytest.importorskip("torch")
    from transformers import ElectraConfig, ElectraModel

    from bitfit_edu.core.biases import bias_census

    settings = dict(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    with torch.device("meta"):
        small = ElectraModel(ElectraConfig(embedding_size=16, **settings))
        base = ElectraModel(ElectraConfig(embedding_size=32, **settings))  # as wide as the layers
    with pytest.raises(BitFitError, match="ELECTRA-small.*not supported. ELECTRA checkpoints whose embedding size"):
        bias_census(small)
    assert {term.group for term in bias_census(base)} >= {"b_q", "b_m2", "b_LN_emb"}


@pytest.mark.parametrize("seeds", ["a", "3-1", "0-x"])
def test_the_gpu_batch_script_refuses_a_malformed_seed_range_in_one_line(tmp_path, seeds):
    script = Path(__file__).resolve().parents[1] / "scripts" / "gpu_batch.py"
    done = subprocess.run([sys.executable, str(script), "grid", "--experiment", "main", "--seeds", seeds,
                           "--results", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and done.stderr.strip() == (
        f"error: --seeds '{seeds}': give FIRST-LAST with FIRST <= LAST, e.g. 0-39, or one seed")
