"""End-to-end runs on a tiny random model and synthetic GLUE files: the record holds what it promises."""

import pytest

from bitfit_edu.core import precision
from bitfit_edu.errors import BitFitError
from bitfit_edu.experiments.profiles import get_profile
from bitfit_edu.experiments.runs import RunConfig
from bitfit_edu.experiments.training import run


def tiny_run(model_dir, glue_dir, method, task="rte", **overrides):
    config = RunConfig(model=model_dir, task=task, method=method, epochs=2, batch_size=8, train_eval_size=8,
                       learning_rate=1e-2 if method != "full" else 1e-3, **overrides)
    return run(config, glue_dir=glue_dir, progress=False)


def test_bitfit_record(tiny_model_dir, glue_dir):
    record = tiny_run(tiny_model_dir, glue_dir, "bitfit")
    assert (record.train_size, record.evaluated) == (24, {"dev": 24, "train": 8})
    assert [e.epoch for e in record.epochs] == [1, 2]
    for epoch in record.epochs:
        assert set(epoch.dev.metrics) == {"accuracy"} and epoch.dev.loss > 0 and "accuracy" in epoch.train.metrics
        assert epoch.train_loss > 0
    assert record.best == record.epochs[record.best_epoch - 1].dev == record.best_evaluation.dev
    assert record.params.trainable_without_head == record.params.biases
    assert len(record.bias_change) == 2 * 8 + 2
    # every bias moves, except that b_k need not (its gradient is zero in exact arithmetic)
    assert all(row.mean_abs_change > 0 for row in record.bias_change if row.group != "b_k")
    timing = record.timing
    assert timing.train_seconds > 0 and timing.train_tokens_per_second > 0 and timing.peak_memory_mb > 0
    assert timing.device == precision.hardware_name()  # e.g. 'CPU (AVX2)': says whether bf16 had kernels


def test_frozen_leaves_every_bias_unchanged(tiny_model_dir, glue_dir):
    record = tiny_run(tiny_model_dir, glue_dir, "frozen")
    assert all(row.mean_abs_change == 0 for row in record.bias_change)
    assert record.params.trainable_without_head == 0


def test_regression_task_and_bitfit_subset(tiny_model_dir, glue_dir):
    record = tiny_run(tiny_model_dir, glue_dir, "bitfit", task="stsb", groups=("b_q", "b_m2"))
    assert record.label == "bitfit:b_q+b_m2"
    assert set(record.best.metrics) == {"pearson", "spearmanr"}
    moved = {row.group for row in record.bias_change if row.mean_abs_change > 0}
    assert moved == {"b_q", "b_m2"}


@pytest.mark.parametrize("kernels,products", [(True, "bf16"), (False, "bf16, emulated in fp32")])
def test_bf16_autocast_runs_with_or_without_kernels(kernels, products, tiny_model_dir, glue_dir, monkeypatch):
    monkeypatch.setattr(precision, "native_bf16", lambda: kernels)  # a tiny model is quick either way
    record = tiny_run(tiny_model_dir, glue_dir, "bitfit", bf16=True)
    assert record.config.bf16 and len(record.epochs) == 2
    assert record.timing.matrix_products == products
    assert all(0 <= e.dev.metrics["accuracy"] <= 1 for e in record.epochs)


def test_step_budget_evaluates_every_k_steps(tiny_model_dir, glue_dir):
    record = tiny_run(tiny_model_dir, glue_dir, "bitfit", max_steps=6, eval_every=2)  # 24 examples, batch 8
    assert [e.step for e in record.epochs] == [2, 4, 6]
    assert [e.epoch for e in record.epochs] == [0.67, 1.33, 2.0]
    assert record.best_step in (2, 4, 6) and record.config.max_steps == 6


@pytest.mark.parametrize("budget,message", [
    (dict(max_steps=6), "max_steps and eval_every go together"),
    (dict(max_steps=6, eval_every=4), "must be a multiple of eval_every"),
    (dict(max_steps=6, eval_every=0), "eval_every must be between 1 and max_steps"),
])
def test_bad_step_budget_is_rejected(budget, message):
    with pytest.raises(BitFitError, match=message):
        RunConfig(model="m", task="rte", method="bitfit", **budget).validated()


def test_mean_readout_runs(tiny_model_dir, glue_dir):
    record = tiny_run(tiny_model_dir, glue_dir, "bitfit", task="sst2", readout="mean")
    assert "b_pooler" not in {row.group for row in record.bias_change}  # mean pooling drops the pooler
    assert record.readout.startswith("mean")


@pytest.mark.parametrize("field,value,message", [
    ("learning_rate", 0.0, "learning_rate must be positive"),
    ("epochs", 0, "epochs must be positive"),
    ("train_size", 0, "train_size must be at least 1"),
    ("method", "adapters", "unknown method"),
    ("task", "squad", "unknown GLUE task"),
    ("readout", "max", "unknown readout"),
])
def test_bad_config_is_rejected_before_training(field, value, message):
    settings = {"model": "m", "task": "rte", "method": "bitfit", field: value}
    with pytest.raises(BitFitError, match=message):
        RunConfig(**settings).validated()


def test_groups_only_for_bitfit():
    with pytest.raises(BitFitError, match="bias groups apply to method 'bitfit' only"):
        RunConfig(model="m", task="rte", method="full", groups=("b_q",)).validated()


def test_profile_decides_the_settings():
    smoke = RunConfig.from_profile(get_profile("smoke"), "RTE", "bitfit", seed=2)
    assert (smoke.task, smoke.seed, smoke.readout, smoke.train_size) == ("rte", 2, "mean", 48)
    assert RunConfig.from_profile(get_profile("paper"), "rte", "full").learning_rate == 2e-5
    assert RunConfig.from_profile(get_profile("paper"), "rte", "rand_uniform").learning_rate == 1e-3
    assert (get_profile("classroom").model_name, get_profile("paper").model_name) == ("all-MiniLM-L6-v2",
                                                                                      "bert-base-cased")
    with pytest.raises(BitFitError, match="unknown profile 'huge'"):
        get_profile("huge")


def test_unloadable_model_is_one_clear_error(tmp_path, glue_dir):
    config = RunConfig(model=str(tmp_path / "no-model-here"), task="rte", method="bitfit")
    with pytest.raises(BitFitError, match="could not load model .*HF_HUB_CACHE"):
        run(config, glue_dir=glue_dir, progress=False)


def test_missing_data_fails_before_the_model_loads(tmp_path):
    config = RunConfig(model=str(tmp_path / "no-model-here"), task="rte", method="bitfit")
    with pytest.raises(BitFitError, match="missing GLUE file"):
        run(config, glue_dir=tmp_path, progress=False)
