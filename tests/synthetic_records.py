"""Synthetic run records for unit tests: the stored JSON of a finished run, with made-up scores."""

from __future__ import annotations

from bitfit_edu.core.methods import parse_label
from bitfit_edu.experiments.runs import SCHEMA, RunConfig, RunRecord


def stored_record(config: RunConfig, dev=(0.5,), train=None, train_size: int = 100, timing: dict | None = None,
                  bias_change: list[dict] = ()) -> dict:
    """The JSON of a finished run of ``config`` whose epochs scored ``dev`` (and ``train``, default: as dev)."""
    train = train or dev
    epochs = [{"epoch": i + 1, "train_loss": 0.5, "dev": {"score": d, "loss": 0.7}, "train": {"score": t, "loss": 0.6},
               "eval_seconds": 1.0} for i, (d, t) in enumerate(zip(dev, train, strict=True))]
    best = max(range(len(dev)), key=dev.__getitem__)
    return {
        "schema": SCHEMA, "run_id": config.run_id, "config": config.as_dict(), "label": config.label,
        "readout": "mean", "sizes": {"train": train_size, "evaluated": {"dev": 10, "train": 10}},
        "params": {"total": 1000, "trainable": 10, "trainable_without_head": 8, "biases": 20},
        "epochs": epochs, "best_epoch": best + 1, "best_step": None, "best": epochs[best]["dev"],
        "last": epochs[-1]["dev"], "bias_change": list(bias_change),
        "timing": {"wall_seconds": 1.0, "train_seconds": 1.0, "train_tokens_per_second": 100.0,
                   "peak_memory_mb": 100.0, "memory_kind": "process peak RSS", "device": "CPU (AVX2)",
                   "matrix_products": "fp32", "torch_threads": 1, **(timing or {})},
        "versions": {}, "finished_at": "2026-01-01T00:00:00+00:00",
    }


def record(label: str = "bitfit", seed: int = 0, learning_rate: float = 1e-3, dev=(0.5,), task: str = "rte",
           **stored) -> RunRecord:
    """A finished run of method ``label`` on ``task`` whose epochs scored ``dev``."""
    method, groups = parse_label(label)
    config = RunConfig(model="m", task=task, method=method, groups=groups, seed=seed, learning_rate=learning_rate,
                       epochs=len(dev))
    return RunRecord.from_json(stored_record(config, dev, **stored))


def fake_record(config: RunConfig) -> RunRecord:
    """A finished run of ``config`` with one epoch scoring 0.5."""
    return RunRecord.from_json(stored_record(config))
