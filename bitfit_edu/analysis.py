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



def results_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Every (task, method, learning rate) of a results folder: best and last dev score (x100) as mean
    and standard deviation over seeds, the mean best epoch, and mean training seconds per run."""
    grouped = frame.groupby(["task", "method", "lr"])
    summary = grouped.agg(best=("best", "mean"), best_std=("best", "std"), last=("last", "mean"),
                          best_epoch=("best_epoch", "mean"), seeds=("seed", "count"),
                          train_seconds=("train_seconds", "mean"))
    return summary.round({"best": 1, "best_std": 1, "last": 1, "best_epoch": 1, "train_seconds": 0})
