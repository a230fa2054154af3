"""Result records to tables: one row per run, then summaries over seeds and learning rates."""

import pytest

from bitfit_edu.analysis import runs_frame, seed_summary, sweep_table


def record(method, seed, lr, scores):
    epochs = [{"epoch": i + 1, "dev": {"score": s}} for i, s in enumerate(scores)]
    best = max(range(len(scores)), key=scores.__getitem__)
    return {"config": {"task": "rte", "seed": seed, "learning_rate": lr, "epochs": len(scores)}, "label": method,
            "best": {"score": scores[best]}, "last": {"score": scores[-1]}, "best_epoch": best + 1,
            "sizes": {"train": 100}, "params": {"trainable": 10, "trainable_without_head": 8, "total": 1000},
            "timing": {"train_seconds": 1.0}, "epochs": epochs}


def test_seed_summary_mean_and_spread():
    frame = runs_frame([record("bitfit", s, 1e-3, [0.5, x]) for s, x in enumerate([0.6, 0.7, 0.8])])
    summary = seed_summary(frame).set_index("method").loc["bitfit"]
    assert summary["mean"] == pytest.approx(70.0) and summary["std"] == pytest.approx(10.0)
    assert summary["seeds"] == 3


def test_sweep_table_per_rate():
    frame = runs_frame([record("full", 0, 2e-5, [0.6, 0.7]), record("full", 0, 1e-4, [0.8, 0.5])])
    table = sweep_table(frame)
    assert table.loc[("full", 1e-4), "best"] == 80.0 and table.loc[("full", 1e-4), "last"] == 50.0
    assert table.loc[("full", 2e-5), "best_epoch"] == 2
