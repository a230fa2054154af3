"""Result records to tables: one row per run, then summaries over seeds and learning rates."""

import json

import numpy as np
import pandas as pd
import pytest
from synthetic_records import record, stored_record

from bitfit_edu.evidence.plots import bias_change_heatmap, learning_curves_over_seeds, method_bars, size_curve_figure
from bitfit_edu.evidence.tables import (
    b_k_over_b_q,
    bias_change_ranks,
    bias_change_table,
    comparison_table,
    cost_table,
    crossings,
    epoch_table,
    flattening_table,
    largest_epoch_gap,
    main_table,
    majority_baseline,
    majority_floors,
    mean_std_strings,
    record_products,
    results_summary,
    rising_tasks,
    runs_frame,
    size_curve_table,
    sweep_report,
)
from bitfit_edu.experiments.runs import SCHEMA, RunConfig, RunRecord


def test_results_summary_over_seeds():
    frame = runs_frame([record("bitfit", s, 1e-3, [0.5, x]) for s, x in enumerate([0.6, 0.8])]
                       + [record("full", 0, 2e-5, [0.9, 0.7])])
    summary = results_summary(frame)
    assert summary.loc[("rte", "bitfit", 1e-3), "best"] == 70.0 and summary.loc[("rte", "bitfit", 1e-3), "seeds"] == 2
    assert summary.loc[("rte", "full", 2e-5), "last"] == 70.0 and summary.loc[("rte", "full", 2e-5), "best_epoch"] == 1


def change_record(changes, seed=0):
    """A record whose bias_change rows have the given mean |change| per (group, layer), init magnitude 2."""
    rows = [{"group": g, "layer": layer, "mean_abs_change": v, "mean_abs_init": 2.0}
            for (g, layer), v in changes.items()]
    outside = {"group": "b_LN_emb", "layer": None, "mean_abs_change": 9.0, "mean_abs_init": 1.0}
    return record(seed=seed, bias_change=[*rows, outside])


def test_bias_change_table_averages_runs_in_paper_order():
    first = change_record({("b_m2", 0): 1.0, ("b_q", 0): 3.0, ("b_q", 1): 5.0, ("b_m2", 1): 1.0})
    second = change_record({("b_m2", 0): 3.0, ("b_q", 0): 1.0, ("b_q", 1): 1.0, ("b_m2", 1): 1.0})
    table = bias_change_table([first, second])
    assert list(table.index) == ["b_q", "b_m2"] and list(table.columns) == [0, 1, "avg"]
    assert table.loc["b_q", 0] == 2.0 and table.loc["b_q", 1] == 3.0 and table.loc["b_q", "avg"] == 2.5
    assert bias_change_table([first, second], relative=True).loc["b_q", "avg"] == 1.25  # divided by |b_init| = 2


def test_bias_change_heatmap_draws_every_cell():
    table = bias_change_table([change_record({("b_q", 0): 1.0, ("b_k", 0): 0.5})])
    fig = bias_change_heatmap(table, "test").figure
    assert len(fig.axes[0].texts) == table.size


def task_record(task, method, seed, score):
    return record(method, seed, 1e-3, [score], task=task)


def test_main_table_means_spreads_and_average():
    scores = {("rte", 0): 0.60, ("rte", 1): 0.70, ("mrpc", 0): 0.80, ("mrpc", 1): 0.90}
    frame = runs_frame([task_record(t, "bitfit", s, v) for (t, s), v in scores.items()])
    means, stds = main_table(frame)
    assert means.loc["bitfit", "rte"] == pytest.approx(65.0) and means.loc["bitfit", "avg"] == pytest.approx(75.0)
    assert stds.loc["bitfit", "rte"] == pytest.approx(7.0711, abs=1e-3)
    assert stds.loc["bitfit", "avg"] == pytest.approx(7.0711, abs=1e-3)  # per-seed averages 70 and 80
    assert mean_std_strings(means, stds).loc["BitFit", "avg"] == "75.0 ± 7.1"  # as a reader sees the method


def test_main_table_has_no_average_for_a_method_missing_a_task():
    frame = runs_frame([task_record("rte", "bitfit", 0, 0.6), task_record("mrpc", "bitfit", 0, 0.8),
                        task_record("rte", "bitfit:b_q", 0, 0.5)])
    means, stds = main_table(frame)
    assert means.loc["bitfit", "avg"] == pytest.approx(70.0) and pd.isna(means.loc["bitfit:b_q", "avg"])
    assert mean_std_strings(means, stds).loc["b_q", "avg"] == ""


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


def test_majority_floors_leave_out_regression_tasks(shared_glue_dir):
    floors = majority_floors(["rte", "stsb", "cola"], shared_glue_dir)
    assert floors == {"rte": pytest.approx(100 * 146 / 277), "cola": 0.0}  # any constant has an MCC of 0


def test_epoch_table_pairs_dev_and_train_per_run():
    runs = {"a": record(dev=(0.5, 0.7, 0.9), train=(0.6, 0.8, 0.9)), "b": record(dev=(0.1, 0.3), train=(0.2, 0.4))}
    table = epoch_table(runs)
    assert list(table.index) == [1, 2, 3]
    assert table.loc[2, ("a", "train")] == 80.0 and table.loc[1, ("b", "dev")] == 10.0
    assert pd.isna(table.loc[3, ("b", "dev")])  # the shorter run has no third epoch


def test_method_bars_one_bar_per_method_and_task_and_a_paper_panel():
    scores = {("rte", 0): 0.60, ("rte", 1): 0.70, ("mrpc", 0): 0.80, ("mrpc", 1): 0.90}
    frame = runs_frame([task_record(t, m, s, v) for (t, s), v in scores.items() for m in ("full", "bitfit")])
    means, stds = main_table(frame)
    second_task = means.columns[1]
    fig = method_bars(means, stds, "test", paper_average={"full": 82.3, "bitfit": 82.4},
                      floors={second_task: 52.7}).figure
    ours, theirs = fig.axes
    assert len(ours.patches) == 2 * 3  # two methods x (rte, mrpc, avg)
    assert "majority class" in [text.get_text() for text in ours.get_legend().get_texts()]
    assert [p.get_height() for p in theirs.patches] == [82.4, 82.3]  # rows of means: bitfit, full


def test_method_bars_show_a_negative_score():
    means = pd.DataFrame({"cola": [-4.0, 10.0]}, index=["frozen", "bitfit"])
    ours = method_bars(means, means * 0, "test").figure.axes[0]
    assert ours.get_ylim()[0] <= -4.0 and ours.get_ylim()[1] == 100


def test_flattening_table_flags_curves_still_rising():
    frame = runs_frame([record("bitfit", 0, 1e-3, [0.5, 0.6, 0.7]), record("bitfit", 1, 1e-3, [0.5, 0.8, 0.7]),
                        record("full", 0, 2e-5, [0.9, 0.7, 0.6])])
    table = flattening_table(frame)
    assert table.loc["BitFit", "best_at_last_epoch"] == "50%" and table.loc["BitFit", "mean_best_epoch"] == 2.5
    assert table.loc["Full-FT", "drop_best_to_last"] == 30.0 and table.loc["Full-FT", "runs"] == 1


def test_learning_curves_over_seeds_one_panel_per_task_one_line_per_method():
    records = [record("bitfit", s, 1e-3, [0.5, 0.6, 0.7]) for s in range(2)] + [record("full", 0, 2e-5, [0.9, 0.8])]
    fig = learning_curves_over_seeds(records, "test").figure
    (ax,) = fig.axes
    bitfit, full = ax.lines
    assert list(bitfit.get_ydata()) == [50.0, 60.0, 70.0] and list(full.get_xdata()) == [1, 2]
    fig.canvas.draw()
    assert all(float(tick).is_integer() for tick in ax.get_xticks()), "epochs are whole numbers"


def test_cost_table_minutes_per_run_and_total_hours():
    records = [record("bitfit", seed, 1e-3, [0.5], timing={"wall_seconds": seconds, "torch_threads": threads})
               for seed, (seconds, threads) in enumerate(((60, 2), (180, 1)))]  # one 2-thread, one 1-thread worker
    table = cost_table(runs_frame(records))
    assert table.loc["BitFit", "rte"] == 2.5 and table.loc["BitFit", "total h"] == round(300 / 3600, 1)


def test_generalization_gap_is_train_minus_dev_at_the_best_epoch():
    r = record("full", 0, 2e-5, [0.6, 0.8, 0.7], train=(0.7, 0.95, 0.99))
    assert runs_frame([r])["gap"].item() == pytest.approx(15.0)  # epoch 2: 95 - 80


def test_size_curve_and_where_the_curves_cross():
    records = []
    for size, (bitfit, full) in {100: (0.6, 0.5), 1000: (0.7, 0.7), 10000: (0.75, 0.8)}.items():
        for method, score in (("bitfit", bitfit), ("full", full)):
            records.append(record(method, 0, 1e-3, [score], train_size=size))
    means, stds = size_curve_table(runs_frame(records))
    assert list(means.index) == [100, 1000, 10000] and means.loc[100, "bitfit"] == pytest.approx(60.0)
    assert crossings(means, "bitfit", "full") == [pytest.approx(1000.0)]
    shifted = means.assign(full=means["full"] - [0, 2, 0])  # BitFit above at 1000, below at 10000
    (where,) = crossings(shifted, "bitfit", "full")
    assert 1000 < where < 10000
    fig = size_curve_figure(shifted, stds, "test", [where]).figure
    assert fig.axes[0].get_xscale() == "log" and len(fig.axes[0].lines) == 3  # two curves, one crossing


def test_bias_change_ranks_per_run():
    first = change_record({("b_m2", 0): 1.0, ("b_q", 0): 3.0}, seed=0)
    second = change_record({("b_m2", 0): 3.0, ("b_q", 0): 1.0}, seed=1)
    ranks = bias_change_ranks([first, second])
    assert ranks.loc[("rte", 0), "b_q"] == 1 and ranks.loc[("rte", 1), "b_m2"] == 1


def test_comparison_table_puts_the_papers_average_beside_ours():
    scores = {("rte", 0): 0.60, ("rte", 1): 0.70}
    frame = runs_frame([task_record(t, m, s, v) for (t, s), v in scores.items() for m in ("full", "bitfit")])
    table = comparison_table(*main_table(frame, methods=["full", "frozen", "bitfit"]), frame=frame)
    assert list(table.index) == ["Full-FT", "BitFit"]  # the requested order, methods without runs left out
    assert table.loc["BitFit", "avg (ours)"] == "65.0 ± 7.1"
    assert table.loc["Full-FT", "paper: BERT-base GLUE avg"] == "82.3"
    assert table.loc["BitFit", "trained params (ours)"] == "10"
    floored = comparison_table(*main_table(frame, methods=["full", "bitfit"]), floors={"rte": 52.7})
    assert floored.loc["majority class (floor)"].to_dict() == {
        "rte": "52.7", "avg (ours)": "", "paper: BERT-base GLUE avg": ""}


@pytest.mark.parametrize("bf16,timing,expected", [
    (True, {"matrix_products": "bf16, emulated in fp32"}, "bf16, emulated in fp32"),
    (True, {}, "bf16"),  # recorded before the field existed: those bf16 runs had kernels
    (False, {}, "fp32"),
])
def test_version_1_records_are_read_in_the_current_shape(bf16, timing, expected):
    old = stored_record(RunConfig(model="m", task="rte", method="bitfit", bf16=bf16))
    del old["best_step"], old["timing"]["matrix_products"]
    old = {**old, "schema": "bitfit_edu.run/1", "timing": {**old["timing"], **timing}}
    before = json.dumps(old)
    read = RunRecord.from_json(old)
    assert record_products(read) == expected and read.best_step is None
    assert (read.stored["schema"], read.stored["schema_read_from"]) == (SCHEMA, "bitfit_edu.run/1")
    assert json.dumps(old) == before  # what was read is not changed


def test_largest_epoch_gap_over_the_epochs_both_ran():
    short, long = record("bitfit", 0, 1e-3, [0.50, 0.60]), record("bitfit", 0, 1e-3, [0.51, 0.57, 0.90])
    assert largest_epoch_gap(short, long) == pytest.approx(3.0)  # epoch 3 of the longer run is not compared


def test_b_k_over_b_q_and_a_frozen_b_k():
    def with_changes(b_q, b_k):
        return change_record({("b_q", 0): b_q, ("b_k", 0): b_k})
    assert b_k_over_b_q(with_changes(0.02, 0.01)) == pytest.approx(0.5)
    assert np.isnan(b_k_over_b_q(with_changes(0.02, 0.0)))


def test_figure_legends_show_readable_method_names():
    import pandas as pd

    from bitfit_edu.evidence.plots import method_bars

    means = pd.DataFrame({"rte": [60.0, 58.0]}, index=["full", "bitfit:b_q+b_m2"])
    fig = method_bars(means, means * 0, "t", paper_average={"full": 82.3}).figure
    legend = [text.get_text() for ax in fig.axes if ax.get_legend() for text in ax.get_legend().get_texts()]
    assert {"Full-FT", "b_q + b_m2"} <= set(legend) and "bitfit:b_q+b_m2" not in legend


def test_sweep_report_tables_best_score_and_epoch_per_rate():
    records = [record("bitfit", 0, lr, scores) for lr, scores in ((1e-3, [0.5, 0.7]), (1e-4, [0.6, 0.55]))]
    report = sweep_report(records, epochs=2)
    assert report.startswith("best dev score:\n") and "epoch of the best dev score (of 2):" in report
    assert "70.0" in report and "60.0" in report and report.endswith("\n\n")
    assert "BitFit" in report and "bitfit" not in report


def test_best_of_five_evaluations_gives_every_method_the_same_chances():
    ten = record(dev=(0.50, 0.60, 0.55, 0.61, 0.58, 0.62, 0.57, 0.63, 0.90, 0.64))  # a lucky 9th epoch
    five = record(dev=(0.50, 0.70, 0.60, 0.65, 0.66))
    frame = runs_frame([ten, five])
    assert list(frame["best"]) == [pytest.approx(90.0), pytest.approx(70.0)]
    assert list(frame["best_of_5"]) == [pytest.approx(64.0), pytest.approx(70.0)]  # epochs 2, 4, ..., 10 of ten


def test_rising_tasks_are_those_whose_best_epoch_is_mostly_the_last():
    frame = runs_frame([record("frozen", s, dev=(0.1, 0.2, 0.3), task="stsb") for s in range(3)]
                       + [record("frozen", s, dev=(0.5, 0.6, 0.55), task="rte") for s in range(3)]
                       + [record("bitfit", 0, dev=(0.5, 0.7), task="cola"), record("bitfit", 1, dev=(0.7, 0.5),
                                                                                   task="cola")])
    assert rising_tasks(frame) == {"frozen": ["stsb"]}  # CoLA: one of two BitFit runs is not more than half
