"""From result records to tables."""

from __future__ import annotations

import pandas as pd

from .biases import LAYER_GROUPS


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


def bias_change_table(records: list[dict], relative: bool = False) -> pd.DataFrame:
    """Mean |b_after - b_before| per bias group (rows, paper order) and layer (columns), averaged over
    the given runs, plus an 'avg' column: the data of the paper's Figure 1.

    With ``relative=True`` each term's change is divided by its pre-trained magnitude mean |b_before|
    first, so a large bias that moves a little and a small one that moves as much can be told apart.
    """
    rows = pd.DataFrame([row for r in records for row in r["bias_change"] if row["layer"] is not None])
    if rows.empty:
        raise ValueError("no bias changes in these records (no runs, or runs without encoder layers)")
    change = rows["mean_abs_change"]
    rows["value"] = change / rows["mean_abs_init"].where(rows["mean_abs_init"] > 0) if relative else change
    table = rows.pivot_table(index="group", columns="layer", values="value", aggfunc="mean")
    table = table.reindex([g for g in LAYER_GROUPS if g in table.index])
    table["avg"] = table.mean(axis=1)
    return table
