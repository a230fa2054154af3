"""From result records to tables."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict

import numpy as np
import pandas as pd

from .. import paper
from ..core.adapters import PEFT_METHODS
from ..core.biases import LAYER_GROUPS
from ..core.counting import share_of_model
from ..core.methods import display_name, readable
from ..data import glue
from ..errors import BitFitError
from ..experiments.runs import RunRecord
from .claims import PRIMARY_PROTOCOL


def encoder_sizes(records: list[RunRecord]) -> dict[tuple[str, str], int]:
    """The pre-trained encoder's parameters per (model, readout), the one denominator of "% of the model"
    (``counting.pretrained_count``): as runs record it; for records made before, from a run of a method that
    adds nothing to the model (its parameters less its head). A peft run's total holds its adapters too, so it
    never gives the denominator."""
    sizes = {}
    for r in records:
        key = (r.config.model, r.config.readout)
        if r.params.encoder is not None:
            sizes[key] = r.params.encoder
        elif key not in sizes and r.config.method not in PEFT_METHODS:
            sizes[key] = r.params.total - (r.params.trainable - r.params.trainable_without_head)
    return sizes


def runs_frame(records: list[RunRecord]) -> pd.DataFrame:
    """One row per run: task, method label, seed, best and last dev score (x100), the best of
    ``EQUAL_EVALUATIONS`` evenly spaced evaluations (x100, 'best_of_5'), the generalization gap at the best
    and at the last epoch (training-subsample minus dev score, x100: 'gap', 'last_gap'), epochs, the number of
    dev evaluations, sizes, parameters, time."""
    rows, encoders = [], encoder_sizes(records)
    for r in records:
        train_at_best, train_at_last = r.best_evaluation.train, r.epochs[-1].train
        rows.append({
            "task": r.task, "method": r.label, "start": r.config.encoder_start, "seed": r.seed,
            "learning_rate": r.config.learning_rate,
            "best": 100 * r.best.score, "last": 100 * r.last.score,
            "gap": 100 * (train_at_best.score - r.best.score) if train_at_best else np.nan,
            "last_gap": 100 * (train_at_last.score - r.last.score) if train_at_last else np.nan,
            "evaluations": len(r.epochs),
            "best_of_5": 100 * best_of_evaluations(r, EQUAL_EVALUATIONS),
            "best_epoch": r.best_epoch, "epochs": r.config.epochs, "train_size": r.train_size,
            "trainable": r.params.trainable, "trainable_without_head": r.params.trainable_without_head,
            "total": r.params.total, "encoder": encoders.get((r.config.model, r.config.readout), np.nan),
            "train_seconds": r.timing.train_seconds,
            "wall_seconds": r.timing.wall_seconds, "core_seconds": r.timing.core_seconds,
        })
    return pd.DataFrame(rows)


# Full-FT is evaluated 5 times (epochs) and the bias-only methods 10: the best of more noisy evaluations
# is higher by chance alone. 'best_of_5' gives every method the same 5, evenly spaced through its training.
EQUAL_EVALUATIONS = 5


def best_of_evaluations(record: RunRecord, evaluations: int) -> float:
    """The best dev score among ``evaluations`` of a run's evaluations, evenly spaced and ending with the
    last (every 2nd of 10, all of 5); all of them if the run has fewer."""
    scores = [e.dev.score for e in record.epochs]
    count = len(scores)
    picked = {round((i + 1) * count / evaluations) - 1 for i in range(evaluations)} if count > evaluations \
        else range(count)
    return max(scores[i] for i in picked)


def sweep_report(records: list[RunRecord], epochs: int) -> str:
    """A learning-rate sweep as two tables: best dev score, and the epoch (of ``epochs``) it came at, per
    method family (rows) and learning rate (columns)."""
    sweep = results_summary(runs_frame(records)).reset_index()
    report = ""
    for value, label, number in (("best", "best dev score:", "{:.1f}"),
                                 ("best_epoch", f"epoch of the best dev score (of {epochs}):", "{:.0f}")):
        table = readable(sweep.pivot_table(index="method", columns="learning_rate", values=value))
        report += f"{label}\n{table.to_string(float_format=number.format, na_rep='')}\n\n"
    return report


def sweep_check(records: list[RunRecord], grid_rates: dict[str, float], dev_pairs: int | None = None) -> pd.DataFrame:
    """Does a sweep on another task agree with the grid's rates? Per method family: the grid's rate and its
    best dev score (x100), the sweep's best rate, its score, the epoch it came at and the training-subsample
    score there (a best at epoch 1 with a training score near chance is a run that has barely moved), and the
    grid's shortfall in points (and in dev examples, given ``dev_pairs``)."""
    rows = {}
    for method, runs in runs_frame(records).groupby("method"):
        best = runs.loc[runs["best"].idxmax()]
        grid = runs[runs["learning_rate"] == grid_rates[method]].iloc[0]
        train_at_best = best["best"] + best["gap"]
        rows[method] = {"grid's rate": f"{grid_rates[method]:g}", "its best dev": round(grid["best"], 1),
                        "sweep's best rate": f"{best['learning_rate']:g}", "best dev": round(best["best"], 1),
                        "at epoch": int(best["best_epoch"]), "train score there": round(train_at_best, 1),
                        "grid's shortfall": round(best["best"] - grid["best"], 1)}
        if dev_pairs:
            rows[method]["in dev examples"] = round((best["best"] - grid["best"]) * dev_pairs / 100, 1)
    return readable(pd.DataFrame.from_dict(rows, orient="index"))


def best_rates(records: list[RunRecord]) -> dict[str, float]:
    """Each method's learning rate with the highest best-epoch dev score in a sweep (one task, one seed):
    the rate its grid runs then use (``profiles``)."""
    frame = runs_frame(records)
    return {method: float(runs.loc[runs["best"].idxmax(), "learning_rate"]) for method, runs in frame.groupby("method")}


def results_summary(frame: pd.DataFrame, by: tuple[str, ...] = ("task", "method", "learning_rate")) -> pd.DataFrame:
    """Every group (``by``: task, method, learning rate) of a results folder: best and last dev score (x100)
    as mean and standard deviation over seeds, the mean best epoch, and mean training seconds per run."""
    grouped = frame.groupby(list(by))
    summary = grouped.agg(best=("best", "mean"), best_std=("best", "std"), last=("last", "mean"),
                          best_epoch=("best_epoch", "mean"), seeds=("seed", "count"),
                          train_seconds=("train_seconds", "mean"))
    return summary.round({"best": 1, "best_std": 1, "last": 1, "best_epoch": 1, "train_seconds": 0})


SETTING_GROUPS = ("task", "method", "learning_rate", "epochs", "format", "setting")


def settings_summary(records: list[RunRecord]) -> pd.DataFrame:
    """``results_summary`` with one row per setting: runs whose configurations differ only in their seed
    (``RunConfig.setting``), with their epochs and number format shown, so that no row mixes two settings.
    Where rows share task, method, rate, epochs and format, the 'setting' column names the fields in which
    their configurations differ ('start random', 'train_size 500'); elsewhere it is '-'."""
    frame = runs_frame(records).assign(format=["bf16" if r.config.bf16 else "fp32" for r in records],
                                       setting=setting_names(records))
    return results_summary(frame, by=SETTING_GROUPS)


def setting_names(records: list[RunRecord]) -> list[str]:
    """Each record's setting in words: the configuration fields, seed aside, whose values differ between the
    settings that share its task, method, learning rate, epochs and number format ('-' for the only one)."""
    def shown(r: RunRecord) -> tuple:
        return r.task, r.label, r.config.learning_rate, r.config.epochs, r.config.bf16

    unseeded = {r.config.setting: {k: v for k, v in r.config.as_dict().items() if k != "seed"} for r in records}
    groups: dict[tuple, set[str]] = {}
    for r in records:
        groups.setdefault(shown(r), set()).add(r.config.setting)
    names = []
    for r in records:
        settings = [unseeded[setting] for setting in sorted(groups[shown(r)])]
        differing = sorted({key for config in settings for key in config
                            if any(other.get(key) != config.get(key) for other in settings)})
        own = {**unseeded[r.config.setting], "start": r.config.encoder_start}  # no start: the pre-trained weights
        names.append(", ".join(f"{key} {own.get(key, 'default')}" for key in differing) if len(settings) > 1 else "-")
    return names


def cost_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Measured core-minutes per run (wall minutes x CPU threads, mean over seeds) by method (rows) and
    task (columns), with the total core-hours of the runs behind it in a 'total h' column. A 2-core
    machine supplies two core-minutes per minute: halve a cell for its wall time there."""
    minutes = frame.pivot_table(index="method", columns="task", values="core_seconds", aggfunc="mean") / 60
    minutes["total h"] = frame.groupby("method")["core_seconds"].sum() / 3600
    return readable(minutes.round(1))


def flattening_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Has each method's dev curve flattened within its epochs? Per method: runs, epochs, mean best epoch,
    the share of runs whose best epoch is their last (curves still rising when training stopped), and
    the mean drop from the best to the last epoch (x100 points; large: the method overfits later on)."""
    frame = frame.assign(best_is_last=frame["best_epoch"] == frame["epochs"], drop=frame["best"] - frame["last"])
    table = frame.groupby("method").agg(runs=("seed", "size"), epochs=("epochs", "max"),
                                        mean_best_epoch=("best_epoch", "mean"),
                                        best_at_last_epoch=("best_is_last", "mean"), drop_best_to_last=("drop", "mean"))
    table["best_at_last_epoch"] = (100 * table["best_at_last_epoch"]).map("{:.0f}%".format)
    return readable(table.round({"mean_best_epoch": 1, "drop_best_to_last": 1}))


def size_curve_table(frame: pd.DataFrame, value: str = "best") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Dev score ``value`` (x100) per training size (rows) and method (columns): mean and std over seeds."""
    grouped = frame.groupby(["train_size", "method"])[value]
    return grouped.mean().unstack(), grouped.std().unstack()


def crossings(means: pd.DataFrame, method: str, baseline: str) -> list[float]:
    """Training sizes where ``method``'s mean curve crosses ``baseline``'s, interpolated linearly in
    log(size) between neighbouring sizes; empty if one stays above the other throughout."""
    difference = (means[method] - means[baseline]).dropna()
    sizes, values = np.log(difference.index.to_numpy(dtype=float)), difference.to_numpy()
    found = []
    for i in range(len(values) - 1):
        if values[i] == 0 or values[i] * values[i + 1] < 0:
            share = values[i] / (values[i] - values[i + 1])
            found.append(float(np.exp(sizes[i] + share * (sizes[i + 1] - sizes[i]))))
    return found


def bias_change_ranks(records: list[RunRecord], relative: bool = False) -> pd.DataFrame:
    """Per run (rows: task, seed), the rank of each bias group by its change averaged over layers
    (1 = moved most): is the paper's 'b_q and b_m2 change most' stable across seeds and tasks?"""
    ranks = {(r.task, r.seed):
             bias_change_table([r], relative)["avg"].rank(ascending=False).astype(int) for r in records}
    table = pd.DataFrame(ranks).T.sort_index()
    table.index.names = ["task", "seed"]
    return table


def bias_change_table(records: list[RunRecord], relative: bool = False) -> pd.DataFrame:
    """Mean |b_after - b_before| per bias group (rows, paper order) and layer (columns), averaged over
    the given runs, plus an 'avg' column: the data of the paper's Figure 1.

    With ``relative=True`` each term's change is divided by its pre-trained magnitude mean |b_before|
    first, so a large bias that moves a little and a small one that moves as much can be told apart.
    """
    rows = pd.DataFrame([asdict(row) for r in records for row in r.bias_change if row.layer is not None])
    if rows.empty:
        raise BitFitError("no bias changes in these records (no runs, or runs without encoder layers)")
    change = rows["mean_abs_change"]
    rows["value"] = change / rows["mean_abs_init"].where(rows["mean_abs_init"] > 0) if relative else change
    table = rows.pivot_table(index="group", columns="layer", values="value", aggfunc="mean")
    table = table.reindex([g for g in LAYER_GROUPS if g in table.index])
    table["avg"] = table.mean(axis=1)
    return table


def pretrained_bias_sizes(records: list[RunRecord]) -> pd.Series:
    """Mean |b_before| of each bias group (paper order), over layers and runs: the pre-trained sizes that
    the relative view of Figure 1 divides by."""
    rows = pd.DataFrame([asdict(row) for r in records for row in r.bias_change if row.layer is not None])
    sizes = rows.groupby("group")["mean_abs_init"].mean()
    return sizes.reindex([g for g in LAYER_GROUPS if g in sizes.index])


def main_table(frame: pd.DataFrame, value: str = "best",
               methods: Iterable[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Mean and standard deviation over seeds of ``value`` (x100) per method (rows) and task (columns),
    plus 'avg': the mean over tasks, whose spread is the std over seeds of the per-seed task averages
    (seeds that have every task). A method without runs on every task has no 'avg': an average over
    fewer tasks would not compare with the others. ``frame`` holds one learning rate per method.
    ``methods`` orders the rows (those with runs); by default they come sorted by label."""
    if frame.groupby(["method", "task", "seed"]).size().max() > 1:
        raise BitFitError("several runs per (method, task, seed): keep one learning rate per method first")
    scores = frame.pivot_table(index=["method", "seed"], columns="task", values=value)
    means = scores.groupby("method").mean()
    stds = scores.groupby("method").std()
    per_seed_average = scores.dropna().mean(axis=1)
    means["avg"] = means.mean(axis=1, skipna=False)
    stds["avg"] = per_seed_average.groupby("method").std()
    if methods is not None:
        order = [method for method in methods if method in means.index]
        means, stds = means.loc[order], stds.loc[order]
    return means, stds


def efficiency_table(frame: pd.DataFrame, methods: Iterable[str], value: str = PRIMARY_PROTOCOL) -> pd.DataFrame:
    """Per method (rows, in the order given): what it trains outside the head, that as a % of the model,
    and its dev score (x100; by default the declared protocol's, each run's last epoch) per task and
    averaged, as 'mean ± std' over seeds (``main_table``)."""
    means, stds = main_table(frame, value, methods)
    trained = frame.groupby("method")[["trainable_without_head", "encoder"]].first().loc[means.index]
    share = share_of_model(trained["trainable_without_head"], trained["encoder"])  # one denominator for all methods
    counts = pd.DataFrame({"trained (excl. head)": trained["trainable_without_head"].map("{:,}".format),
                           "% of the model": share.map("{:.3g}%".format)}, index=means.index)
    return readable(counts).join(mean_std_strings(means, stds))


def seed_spread(frame: pd.DataFrame, methods: Iterable[str], value: str = PRIMARY_PROTOCOL) -> pd.DataFrame:
    """Per method and seed: the GLUE average of its dev scores (x100, seeds with every task; by default each
    run's last epoch, the declared protocol) and what it trains outside the head
    (``plots.score_against_parameters`` draws it)."""
    scores = frame.pivot_table(index=["method", "seed"], columns="task", values=value).dropna()
    trained = frame.groupby("method")["trainable_without_head"].first()
    spread = scores.mean(axis=1).rename("average").reset_index()
    spread["trained"] = spread["method"].map(trained)
    order = {method: rank for rank, method in enumerate(methods)}
    spread = spread[spread["method"].isin(order)]
    return spread.sort_values("method", key=lambda labels: labels.map(order), kind="stable").reset_index(drop=True)


def rerun_differences(reruns: list[RunRecord], store) -> pd.DataFrame:
    """Each re-run of a configuration on another machine (rows: task, method, seed) beside the committed
    run of the same configuration in ``store``: both best dev scores (x100), the difference, and each side's
    device. Configurations without a committed run are left out."""
    rows = []
    for rerun in reruns:
        committed = store.finished(rerun.config)
        if committed is not None:
            rows.append({"task": rerun.task, "method": rerun.label, "seed": rerun.seed,
                         "re-run": 100 * rerun.best.score, "committed": 100 * committed.best.score,
                         "difference": 100 * (rerun.best.score - committed.best.score),
                         "re-run on": rerun.timing.device, "committed on": committed.timing.device})
    return readable(pd.DataFrame(rows).set_index(["task", "method", "seed"]).sort_index())


def seed_gap(frame: pd.DataFrame, methods: Iterable[str], seeds: tuple[int, int] = (0, 1)) -> float:
    """The mean |best dev score of one seed minus another's| (x100) of the same method and task on one
    machine: how far apart two runs land when only the seed changes (``rerun_differences`` compares)."""
    runs = frame[frame["method"].isin(list(methods))].pivot_table(index=["method", "task"], columns="seed",
                                                                  values="best")
    return float((runs[seeds[0]] - runs[seeds[1]]).abs().mean())


def mean_std_strings(means: pd.DataFrame, stds: pd.DataFrame) -> pd.DataFrame:
    """Cells as 'mean ± std' with one decimal ('mean' alone where there is a single seed), methods by
    their display names."""
    def cell(mean: float, std: float) -> str:
        return "" if pd.isna(mean) else f"{mean:.1f}" if pd.isna(std) else f"{mean:.1f} ± {std:.1f}"
    cells = {c: [cell(m, s) for m, s in zip(means[c], stds[c], strict=True)] for c in means.columns}
    return readable(pd.DataFrame(cells, index=means.index))


def comparison_table(means: pd.DataFrame, stds: pd.DataFrame, floors: dict[str, float] | None = None,
                     frame: pd.DataFrame | None = None) -> pd.DataFrame:
    """'mean ± std' per task for each method of ``main_table`` (rows by display name), our average over
    tasks as 'avg (ours)', and beside it the paper's BERT-base GLUE dev average, labelled as the paper's.
    ``floors`` (``majority_floors``) adds a last row, 'majority class (floor)', empty where a task has none;
    ``frame`` (``runs_frame``) adds a column of the parameters each method trained, head included."""
    table = mean_std_strings(means, stds).rename(columns={"avg": "avg (ours)"})
    table["paper: BERT-base GLUE avg"] = [f"{paper.BERT_BASE_DEV_AVERAGE[m]:.1f}" for m in means.index]
    if frame is not None:
        trained = frame.groupby("method")["trainable"].first()
        table["trained params (ours)"] = [f"{trained[m]:,}" for m in means.index]
    if floors:
        table.loc["majority class (floor)"] = pd.Series({t: f"{v:.1f}" for t, v in floors.items()})
    return table.fillna("")


def majority_baseline(task: str, glue_dir=None) -> float:
    """The dev score (x100) of always predicting the training set's most frequent label: the floor a
    classifier must beat (MRPC: 74.8, the mean of 68.4 accuracy and 81.2 F1). Classification only."""
    spec = glue.get_task(task)
    if spec.is_regression:
        raise BitFitError(f"{spec.name} is a regression task: a constant prediction has no correlation")
    labels = glue.load_split(spec, "train", glue_dir)["label"]
    majority = max(set(labels), key=labels.count)
    dev = glue.load_split(spec, spec.dev_split, glue_dir)["label"]
    return 100 * glue.task_score(spec, glue.glue_metrics(spec, [majority] * len(dev), dev))


def majority_floors(tasks: list[str], glue_dir=None) -> dict[str, float]:
    """``majority_baseline`` of each classification task in ``tasks``; regression tasks have no floor."""
    return {task: majority_baseline(task, glue_dir) for task in tasks if not glue.get_task(task).is_regression}


def record_products(record: RunRecord) -> str:
    """How a record's run computed its matrix products (``precision.matrix_products``): 'fp32', 'bf16'
    (hardware kernels) or 'bf16, emulated in fp32' (``runs.upgrade`` derives it for old records)."""
    return record.timing.matrix_products


def b_k_over_b_q(record: RunRecord) -> float:
    """mean |Δb_k| / mean |Δb_q| over layers: near 0 in fp32, where b_k's gradient vanishes, far from it
    under bf16 (notebook 5); NaN for a variant that leaves b_k frozen."""
    change = bias_change_table([record])["avg"]
    return float(change["b_k"] / change["b_q"]) if change["b_k"] > 0 else float("nan")


def largest_epoch_gap(run: RunRecord, reference: RunRecord) -> float:
    """The largest dev-score difference (x100 points) between two runs over the epochs both ran."""
    pairs = zip(run.epochs, reference.epochs, strict=False)  # the shorter run's epochs
    return 100 * max(abs(a.dev.score - b.dev.score) for a, b in pairs)


def epoch_table(records: dict[str, RunRecord]) -> pd.DataFrame:
    """Dev and training-subsample score (x100) per epoch, one column pair per labelled run record (runs
    of different lengths leave the missing epochs empty)."""
    columns = {(label, split): pd.Series({e.epoch: round(100 * getattr(e, split).score, 1) for e in record.epochs})
               for label, record in records.items() for split in ("dev", "train")}
    table = pd.DataFrame(columns)
    table.index.name = "epoch"
    return table


def deployment_benchmark(stored: dict) -> dict[str, pd.DataFrame]:
    """The tables of ``benchmarks/deployment.py``'s JSON: 'training' (per method and batch: seconds per
    step, tokens per second, process peak and training memory in MB), 'padding' and 'targets'."""
    training = pd.DataFrame(stored["training"]).assign(method=lambda f: f["method"].map(display_name))
    training = training.set_index(["batch", "method"])[
        ["seconds_per_step", "tokens_per_second", "peak_rss_mb", "training_memory_mb"]]
    padding = pd.DataFrame(stored["padding"]).set_index("padding")
    targets = pd.DataFrame(stored["targets"]).T
    return {"training": training, "padding": padding, "targets": targets}


def rising_tasks(frame: pd.DataFrame, share: float = 0.5) -> dict[str, list[str]]:
    """Per method, the tasks on which more than ``share`` of its runs scored best at their last epoch:
    dev curves still rising when training stopped, where more epochs might have changed the comparison."""
    last = frame.assign(best_is_last=frame["best_epoch"] == frame["epochs"])
    rising = last.groupby(["method", "task"])["best_is_last"].mean()
    return {method: sorted(rising[method][rising[method] > share].index) for method in rising.index.levels[0]
            if (rising[method] > share).any()}
