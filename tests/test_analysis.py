"""Result records to tables: one row per run, then summaries over seeds and learning rates."""

import pytest

from bitfit_edu.analysis import (
    bias_change_table,
    epoch_table,
    main_table,
    majority_baseline,
    mean_std_strings,
    results_summary,
    runs_frame,
)
from bitfit_edu.plots import bias_change_heatmap


def record(method, seed, lr, scores):
    epochs = [{"epoch": i + 1, "dev": {"score": s}} for i, s in enumerate(scores)]
    best = max(range(len(scores)), key=scores.__getitem__)
    return {"config": {"task": "rte", "seed": seed, "learning_rate": lr, "epochs": len(scores)}, "label": method,
            "best": {"score": scores[best]}, "last": {"score": scores[-1]}, "best_epoch": best + 1,
            "sizes": {"train": 100}, "params": {"trainable": 10, "trainable_without_head": 8, "total": 1000},
            "timing": {"train_seconds": 1.0}, "epochs": epochs}


def test_results_summary_over_seeds():
    frame = runs_frame([record("bitfit", s, 1e-3, [0.5, x]) for s, x in enumerate([0.6, 0.8])]
                       + [record("full", 0, 2e-5, [0.9, 0.7])])
    summary = results_summary(frame)
    assert summary.loc[("rte", "bitfit", 1e-3), "best"] == 70.0 and summary.loc[("rte", "bitfit", 1e-3), "seeds"] == 2
    assert summary.loc[("rte", "full", 2e-5), "last"] == 70.0 and summary.loc[("rte", "full", 2e-5), "best_epoch"] == 1


def change_record(changes):
    """A record whose bias_change rows have the given mean |change| per (group, layer), init magnitude 2."""
    rows = [{"group": g, "layer": layer, "mean_abs_change": v, "mean_abs_init": 2.0}
            for (g, layer), v in changes.items()]
    return {"bias_change": rows + [{"group": "b_LN_emb", "layer": None, "mean_abs_change": 9.0, "mean_abs_init": 1.0}]}


def test_bias_change_table_averages_runs_in_paper_order():
    first = change_record({("b_m2", 0): 1.0, ("b_q", 0): 3.0, ("b_q", 1): 5.0, ("b_m2", 1): 1.0})
    second = change_record({("b_m2", 0): 3.0, ("b_q", 0): 1.0, ("b_q", 1): 1.0, ("b_m2", 1): 1.0})
    table = bias_change_table([first, second])
    assert list(table.index) == ["b_q", "b_m2"] and list(table.columns) == [0, 1, "avg"]
    assert table.loc["b_q", 0] == 2.0 and table.loc["b_q", 1] == 3.0 and table.loc["b_q", "avg"] == 2.5
    assert bias_change_table([first, second], relative=True).loc["b_q", "avg"] == 1.25  # divided by |b_init| = 2


def test_bias_change_heatmap_draws_every_cell():
    table = bias_change_table([change_record({("b_q", 0): 1.0, ("b_k", 0): 0.5})])
    fig = bias_change_heatmap(table, "test")
    assert len(fig.axes[0].texts) == table.size


def task_record(task, method, seed, score):
    r = record(method, seed, 1e-3, [score])
    r["config"]["task"] = task
    return r


def test_main_table_means_spreads_and_average():
    scores = {("rte", 0): 0.60, ("rte", 1): 0.70, ("mrpc", 0): 0.80, ("mrpc", 1): 0.90}
    frame = runs_frame([task_record(t, "bitfit", s, v) for (t, s), v in scores.items()])
    means, stds = main_table(frame)
    assert means.loc["bitfit", "rte"] == pytest.approx(65.0) and means.loc["bitfit", "avg"] == pytest.approx(75.0)
    assert stds.loc["bitfit", "rte"] == pytest.approx(7.0711, abs=1e-3)
    assert stds.loc["bitfit", "avg"] == pytest.approx(7.0711, abs=1e-3)  # per-seed averages 70 and 80
    assert mean_std_strings(means, stds).loc["bitfit", "avg"] == "75.0 ± 7.1"


def test_main_table_refuses_mixed_learning_rates():
    frame = runs_frame([task_record("rte", "full", 0, 0.6), task_record("rte", "full", 0, 0.7)])
    with pytest.raises(ValueError, match="one learning rate per method"):
        main_table(frame)


def test_majority_baseline_on_real_dev_sets(shared_glue_dir):
    accuracy, f1 = 279 / 408, 2 * 279 / (2 * 279 + 129)  # MRPC dev: 279 equivalent, 129 not
    assert majority_baseline("mrpc", shared_glue_dir) == pytest.approx(100 * (accuracy + f1) / 2)
    # RTE train: 1,249 entailment against 1,241 not_entailment; dev has 146 entailment of 277
    assert majority_baseline("rte", shared_glue_dir) == pytest.approx(100 * 146 / 277)
    with pytest.raises(ValueError, match="regression"):
        majority_baseline("stsb", shared_glue_dir)


def test_epoch_table_pairs_dev_and_train_per_run():
    runs = {name: {"epochs": [{"epoch": i + 1, "dev": {"score": d}, "train": {"score": t}}
                              for i, (d, t) in enumerate(pairs)]}
            for name, pairs in {"a": [(0.5, 0.6), (0.7, 0.8)], "b": [(0.1, 0.2), (0.3, 0.4)]}.items()}
    table = epoch_table(runs)
    assert list(table.index) == [1, 2] and table.loc[2, ("a", "train")] == 80.0 and table.loc[1, ("b", "dev")] == 10.0
