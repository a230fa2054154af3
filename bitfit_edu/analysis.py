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

