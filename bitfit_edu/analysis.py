"""From result records to tables: one row per run, then mean and spread over seeds."""

from __future__ import annotations

import pandas as pd

from .glue import get_task


def runs_frame(records: list[dict]) -> pd.DataFrame:
    """One row per run: task, method label, seed, best and last dev score (x100), epochs, sizes, time."""
    rows = []
    for r in records:
        config = r["config"]
        rows.append({
            "task": config["task"], "method": r["label"], "seed": config["seed"],
            "lr": config["learning_rate"], "best": 100 * r["best"]["score"], "last": 100 * r["last"]["score"],
            "best_epoch": r["best_epoch"], "epochs": config["epochs"], "train_size": r["sizes"]["train"],
            "trainable": r["params"]["trainable"], "trainable_without_head": r["params"]["trainable_without_head"],
            "total": r["params"]["total"], "train_seconds": r["timing"]["train_seconds"],
        })
    return pd.DataFrame(rows)


def metric_names(task: str) -> str:
    return " / ".join(get_task(task).metrics)


def seed_summary(frame: pd.DataFrame, value: str = "best") -> pd.DataFrame:
    """Mean, standard deviation and seed count of ``value`` per task and method."""
    grouped = frame.groupby(["task", "method"])[value]
    return grouped.agg(mean="mean", std="std", seeds="count").reset_index()
