"""From result records to tables."""

from __future__ import annotations

import pandas as pd


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



def seed_summary(frame: pd.DataFrame, value: str = "best", by: tuple[str, ...] = ("task", "method")) -> pd.DataFrame:
    """Mean, standard deviation and number of seeds of ``value`` for each group of runs."""
    return frame.groupby(list(by))[value].agg(mean="mean", std="std", seeds="count").reset_index()


def sweep_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Learning-rate sweep: best and last-epoch dev score (x100) and the best epoch, per method and rate."""
    columns = ["best", "last", "best_epoch"]
    return frame.groupby(["method", "lr"])[columns].mean().round({"best": 1, "last": 1})
