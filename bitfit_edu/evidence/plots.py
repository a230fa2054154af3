"""Figures for the notebooks: functions that take data and return a ``Chart``, a matplotlib Figure with
its alt text, written from the same data it plots.

``Chart.show(name)`` saves the PNG under ``results/figures/`` of the checkout (found from the working
directory, so a notebook in ``notebooks/`` writes to the same place as a script at the root) with its alt
text beside it (``<name>.alt.txt``, which the course site reads), and displays the image with its alt text,
which JupyterLab, Colab and the site all render. Paths are reported relative to the checkout, never
as absolute paths.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.patches import ConnectionPatch
from matplotlib.ticker import MaxNLocator

from ..core.methods import display_name
from ..data.locations import course_root, results_folder
from ..errors import BitFitError
from ..experiments.runs import RunRecord

DPI = 100
ALT_SUFFIX = ".alt.txt"
TITLE_SUFFIX = ".title.txt"


@dataclass
class Chart:
    """A figure and its alt text: what a reader who cannot see the figure needs to know from it."""

    figure: Figure
    alt: str

    def png(self) -> bytes:
        """The figure as PNG bytes, at ``DPI``."""
        from io import BytesIO

        buffer = BytesIO()
        self.figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
        return buffer.getvalue()

    @property
    def title(self) -> str:
        """The figure's own title: its super-title, else its first panel's."""
        titles = [self.figure._suptitle.get_text()] if self.figure._suptitle else []
        titles += [axes.get_title() for axes in self.figure.axes]
        return next((title.replace("\n", " ") for title in titles if title.strip()), "")

    def save(self, name: str) -> str:
        """Write ``results/figures/<name>.png``, its alt text beside it (``<name>.alt.txt``) and its title
        (``<name>.title.txt``, for the results page); returns the PNG's path relative to the checkout."""
        folder = results_folder("figures")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.png"
        path.write_bytes(self.png())
        (folder / f"{name}{ALT_SUFFIX}").write_text(self.alt + "\n")
        (folder / f"{name}{TITLE_SUFFIX}").write_text(self.title + "\n")
        return path.relative_to(course_root()).as_posix()

    def show(self, name: str | None = None) -> None:
        """Save the chart as ``name`` (``save``: ``results/figures/<name>.png``), then display it as an image
        with its alt text. Without a name (a live measurement, not a committed result) it is only displayed."""
        from IPython.display import display

        if name is not None:
            self.save(name)
        plt.close(self.figure)  # displayed once, below, with its alt text; not again by the inline backend
        display(self)

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, str]:
        encoded = base64.b64encode(self.png()).decode("ascii")
        image = f'<img src="data:image/png;base64,{encoded}" alt="{html.escape(self.alt)}"/>'
        return {"text/html": image, "text/plain": self.alt}


def alt_texts() -> dict[str, str]:
    """The alt text of every saved figure, by name (``results/figures/<name>.alt.txt``)."""
    folder = results_folder("figures")
    return {path.name.removesuffix(ALT_SUFFIX): path.read_text().strip()
            for path in sorted(folder.glob(f"*{ALT_SUFFIX}"))}


def _listing(values: Iterable[float], digits: int = 1) -> str:
    return ", ".join(f"{value:.{digits}f}" for value in values)


def parameter_kinds_figure(kinds: dict[str, int], title: str, highlight: str = "biases b",
                           zoom_below: float = 1.0) -> Chart:
    """The whole model as one bar split by parameter kind (linear scale), and below it a zoom into the
    kinds smaller than ``zoom_below`` percent, where the ``highlight`` kind becomes visible."""
    total = sum(kinds.values())
    shares = {k: 100 * n / total for k, n in kinds.items()}
    large = [k for k in kinds if shares[k] >= zoom_below]
    small = [k for k in kinds if shares[k] < zoom_below]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9.5, 3.6), gridspec_kw={"hspace": 1.0})
    for ax, names in ((top, large + small), (bottom, small)):
        width = sum(shares[k] for k in names)
        left = 0.0
        for index, name in enumerate(names):
            color = "tab:red" if name == highlight else plt.cm.Greys(0.15 + 0.2 * (index % 2))
            ax.barh(0, shares[name], left=left, color=color, edgecolor="white", height=0.8)
            label = f"{name}\n{kinds[name]:,} ({shares[name]:.3g}%)"
            middle = left + shares[name] / 2
            if shares[name] > 0.1 * width:
                ax.text(middle, 0, label, ha="center", va="center", fontsize=8,
                        color="white" if name == highlight else "black")
            elif ax is bottom:
                ax.annotate(label, (middle, 0.4), (middle, 1.1), ha="center", va="bottom", fontsize=8,
                            arrowprops={"arrowstyle": "-", "color": "0.4"})
            left += shares[name]
        ax.set_xlim(0, width)
        ax.set_ylim(-0.5, 0.5)
        ax.set_yticks([])
        ax.set_xticks([0, width], ["0", f"{width:.3g}%"])
        for side in ("top", "right", "left"):
            ax.spines[side].set_visible(False)
    start = 100 - sum(shares[k] for k in small)
    bottom.set_xlabel(f"zoom into the last {100 - start:.2f}% of the model")
    for x_top, x_bottom in ((start, 0), (100, bottom.get_xlim()[1])):
        fig.add_artist(ConnectionPatch((x_top, -0.4), (x_bottom, 0.4), "data", "data", axesA=top,
                                       axesB=bottom, color="tab:red", alpha=0.5))
    top.set_title(title)
    listed = "; ".join(f"{kind} {count:,} ({shares[kind]:.3g}%)" for kind, count in kinds.items())
    return Chart(fig, f"Stacked bar: {title}. Share of the model by kind: {listed}. Below it, a zoom into the "
                      f"kinds under {zoom_below:g}% of the model, where {highlight} becomes visible.")


def learning_curves(records: dict[str, RunRecord], title: str) -> Chart:
    """Dev (solid) and training-subsample (dashed) score per epoch of each run (``RunRecord.epochs``).

    ``records`` maps a legend label to a run record.
    """
    fig, ax = plt.subplots(figsize=(8, 3.6))
    for index, (label, record) in enumerate(records.items()):
        color = f"C{index}"
        epochs = [e.epoch for e in record.epochs]
        ax.plot(epochs, [100 * e.dev.score for e in record.epochs], "o-", color=color, label=f"{label}: dev")
        ax.plot(epochs, [100 * e.train.score for e in record.epochs], "s--", color=color,
                alpha=0.7, label=f"{label}: train subsample")
    ax.set_xlabel("epoch")
    ax.set_ylabel("score (x100)")
    ax.set_xticks(sorted({e.epoch for r in records.values() for e in r.epochs}))
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    runs = ". ".join(f"{label}: dev {_listing(100 * e.dev.score for e in record.epochs)}; training subsample "
                     f"{_listing(100 * e.train.score for e in record.epochs)}" for label, record in records.items())
    return Chart(fig, f"Line chart: {title}. Score (x100) after each epoch, first to last. {runs}.")


def bias_change_heatmap(table: pd.DataFrame, title: str, value_label: str = "mean |Δb|",
                        log_scale: bool = False) -> Chart:
    """A bias group x layer heatmap (rows: b_q ... b_LN2, columns: layers and 'avg'), as in the paper's
    Figure 1, with each cell's value written in it. ``log_scale`` colours by the logarithm, so that one
    row many times larger than the rest does not wash the others out."""
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * table.shape[1], 0.5 + 0.42 * table.shape[0]))
    values = table.to_numpy(dtype=float)
    norm = LogNorm(vmin=values[values > 0].min(), vmax=values.max()) if log_scale else None
    image = ax.imshow(values, cmap="Reds", aspect="auto", norm=norm)
    ax.set_xticks(range(table.shape[1]), [str(c) for c in table.columns])
    ax.set_yticks(range(table.shape[0]), table.index)
    ax.set_xlabel("layer")
    shade = norm or (lambda value: value / values.max())  # 0 (light) to 1 (dark)
    for (i, j), value in np.ndenumerate(values):
        ax.text(j, i, f"{value:.2g}", ha="center", va="center", fontsize=7,
                color="white" if value > 0 and shade(value) > 0.6 else "black")
    ax.axvline(table.shape[1] - 1.5, color="white", linewidth=3)  # set the average column apart
    fig.colorbar(image, ax=ax, label=value_label)
    ax.set_title(title)
    fig.tight_layout()
    row, column = np.unravel_index(np.nanargmax(values), values.shape)
    last = table.iloc[:, -1]
    rows = ", ".join(f"{group} {value:.2g}" for group, value in last.items())
    return Chart(fig, f"Heatmap: {title}. Rows: {', '.join(map(str, table.index))}; columns: layers "
                      f"{table.columns[0]} to {table.columns[-2]}, then '{table.columns[-1]}'. {value_label} in the "
                      f"last column: {rows}. Largest cell: {table.index[row]} at {table.columns[column]}, "
                      f"{values[row, column]:.2g}.")


def method_bars(means: pd.DataFrame, stds: pd.DataFrame, title: str, paper_average: dict[str, float] | None = None,
                floors: dict[str, float] | None = None) -> Chart:
    """Grouped bars: one group per task (and 'avg'), one bar per method (rows of ``means``), error bars one
    std over seeds. ``floors`` marks a per-task baseline (e.g. the majority class) with a dashed line;
    ``paper_average`` adds a side panel with the paper's GLUE averages for the same methods, labelled."""
    methods, tasks = list(means.index), list(means.columns)
    panels = {"width_ratios": [len(tasks), 1.2]} if paper_average else None
    fig, axes = plt.subplots(1, 2 if paper_average else 1, figsize=(10, 3.8), sharey=True, gridspec_kw=panels,
                             squeeze=False)
    ours = axes[0, 0]
    width = 0.8 / len(methods)
    for index, method in enumerate(methods):
        x = np.arange(len(tasks)) + (index - (len(methods) - 1) / 2) * width
        ours.bar(x, means.loc[method], width, yerr=stds.loc[method].fillna(0), capsize=2, color=f"C{index}",
                 label=display_name(method))
    floored = [task for task in tasks if task in (floors or {})]
    for task in floored:
        position = tasks.index(task)
        ours.hlines(floors[task], position - 0.45, position + 0.45, colors="black", linestyles="dashed",
                    label="majority class" if task == floored[0] else None)
    ours.set_xticks(range(len(tasks)), tasks)
    ours.set_ylabel("dev score (x100)")
    ours.set_title(f"{title}\nmean ± std over seeds", fontsize=10)
    ours.grid(axis="y", alpha=0.3)
    ours.set_ylim(top=100)  # bottom stays free: a correlation or MCC can be negative
    ours.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=min(len(methods) + 1, 5))
    if paper_average:
        theirs = axes[0, 1]
        values = [paper_average.get(m, np.nan) for m in methods]
        theirs.bar(range(len(methods)), values, color=[f"C{i}" for i in range(len(methods))])
        theirs.set_xticks(range(len(methods)), [display_name(m) for m in methods], rotation=60, ha="right",
                          fontsize=8)
        theirs.set_title("the paper's: BERT-base,\nGLUE dev average", fontsize=9)
        theirs.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    bars = "; ".join(f"{display_name(method)}: " + ", ".join(f"{task} {means.loc[method, task]:.1f}" for task in tasks)
                     for method in methods)
    alt = f"Grouped bars: {title}. Mean dev score (x100) over seeds, per method and task: {bars}."
    if floored:
        alt += " Dashed lines, the majority class: " + ", ".join(f"{task} {floors[task]:.1f}" for task in floored) + "."
    if paper_average:
        alt += (" Side panel, the paper's BERT-base GLUE dev averages: "
                + ", ".join(f"{display_name(m)} {paper_average[m]:.1f}" for m in methods if m in paper_average) + ".")
    return Chart(fig, alt)


def learning_curves_over_seeds(records: list[RunRecord], title: str, split: str = "dev") -> Chart:
    """One panel per task: ``split`` score (x100) per epoch of each method, mean over seeds as a line and
    ± one std as a band. Methods with more epochs simply run further to the right."""
    rows = pd.DataFrame([{"task": r.task, "method": r.label, "seed": r.seed, "epoch": e.epoch,
                          "score": 100 * getattr(e, split).score} for r in records for e in r.epochs])
    tasks = list(dict.fromkeys(rows["task"]))
    fig, axes = plt.subplots(1, len(tasks), figsize=(2.6 * len(tasks) + 1, 3.0), squeeze=False)
    panels = []
    for ax, task in zip(axes[0], tasks, strict=True):
        stats = rows[rows["task"] == task].groupby(["method", "epoch"])["score"].agg(["mean", "std"])
        described = []
        for index, method in enumerate(dict.fromkeys(rows["method"])):
            if method not in stats.index.get_level_values("method"):
                continue
            curve = stats.loc[method]
            mean = curve["mean"]
            described.append(f"{display_name(method)} {mean.iloc[0]:.1f} at epoch {mean.index[0]}, {mean.iloc[-1]:.1f} "
                             f"at epoch {mean.index[-1]}, highest {mean.max():.1f} at epoch {mean.idxmax()}")
            ax.plot(mean.index, mean, "-", color=f"C{index}", label=display_name(method))
            ax.fill_between(mean.index, mean - curve["std"].fillna(0), mean + curve["std"].fillna(0),
                            color=f"C{index}", alpha=0.2)
        panels.append(f"{task}: " + "; ".join(described))
        ax.set_title(task, fontsize=10)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel(f"{split} score (x100)")
    axes[0, -1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return Chart(fig, f"Line charts, one per task: {title}. Mean {split} score (x100) over seeds by epoch, per "
                      f"method. " + ". ".join(panels) + ".")


def size_curve_figure(means: pd.DataFrame, stds: pd.DataFrame, title: str,
                      crossing_sizes: list[float] = (), score: str = "last-epoch dev score") -> Chart:
    """A dev ``score`` against training-set size on a log x-axis: one line per method (columns), mean over
    seeds with ± one std as a band, and a dotted vertical line where the curves cross."""
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for index, method in enumerate(means.columns):
        mean, std = means[method].dropna(), stds[method].reindex(means[method].dropna().index).fillna(0)
        ax.plot(mean.index, mean, "o-", color=f"C{index}", label=display_name(method))
        ax.fill_between(mean.index, mean - std, mean + std, color=f"C{index}", alpha=0.2)
    for size in crossing_sizes:
        ax.axvline(size, color="0.4", linestyle=":", label=f"curves cross near {size:,.0f}")
    ax.set_xscale("log")
    ax.set_xlabel("training examples (log scale)")
    ax.set_ylabel(f"{score} (x100)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    lines = "; ".join(f"{display_name(method)}: " + ", ".join(f"{size:,.0f} examples {value:.1f}"
                                                           for size, value in means[method].dropna().items())
                      for method in means.columns)
    crossing = (" The mean curves cross near " + " and ".join(f"{size:,.0f}" for size in crossing_sizes) + " examples."
                if len(crossing_sizes) else " The mean curves do not cross.")
    return Chart(fig, f"Line chart, log x-axis: {title}. Mean {score} (x100) over seeds against training-set size: "
                      f"{lines}.{crossing}")


def score_against_parameters(spread: pd.DataFrame, title: str) -> Chart:
    """GLUE average against trainable parameters (head excluded, log scale): each seed a small dot, each
    method's mean a larger marker with its std over seeds (``analysis.seed_spread``). A method that trains
    nothing outside the head (Frozen) has no place on a log axis and is left out."""
    fig, ax = plt.subplots(figsize=(9, 4.5))
    markers = "osD^vP*X"
    points = []
    for index, (method, runs) in enumerate(spread[spread["trained"] > 0].groupby("method", sort=False)):
        color, marker, trained = f"C{index}", markers[index % len(markers)], runs["trained"].iloc[0]
        ax.scatter(runs["trained"], runs["average"], s=14, color=color, marker=marker, alpha=0.45)
        ax.errorbar(trained, runs["average"].mean(), yerr=runs["average"].std(), fmt=marker, color=color, capsize=3,
                    markersize=8, label=display_name(method))
        points.append(f"{display_name(method)} {trained:,} parameters, {runs['average'].mean():.1f} ± "
                      f"{runs['average'].std():.1f} over {len(runs)} seeds")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters outside the head (log scale)")
    ax.set_ylabel("GLUE average, best dev score (x100)")
    ax.set_title(f"{title}\nsmall dots: seeds; markers: mean ± std over seeds", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return Chart(fig, f"Scatter plot, log x-axis: {title}. GLUE average (x100, best dev score) against trainable "
                      f"parameters outside the head, mean ± std per method: " + "; ".join(points) + ".")


def verdict_probability_figure(curves: dict[str, pd.DataFrame], title: str, seeds_now: int | None = None) -> Chart:
    """One panel per assumed true gap (``curves``: its label -> ``power.probability_curve``): the probability
    of each verdict against the number of seeds per method, with today's number of seeds marked."""
    fig, axes = plt.subplots(1, len(curves), figsize=(4.6 * len(curves), 3.2), sharey=True, squeeze=False)
    colors = {"holds": "tab:green", "does not hold": "tab:red", "not resolved at this scale": "0.5"}
    for ax, (label, curve) in zip(axes[0], curves.items(), strict=True):
        for verdict, color in colors.items():
            ax.plot(curve.index, curve[verdict], marker=".", color=color, label=verdict)
        if seeds_now:
            ax.axvline(seeds_now, color="black", linestyle=":", linewidth=1, label=f"today: {seeds_now} seeds")
        ax.axhline(0.8, color="black", linewidth=0.5, alpha=0.4)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("seeds per method")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("probability of the verdict")
    axes[0, 0].set_ylim(0, 1)
    axes[0, -1].legend(fontsize=7, loc="center right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    marks = sorted({curve.index[0], seeds_now or curve.index[0], curve.index[-1]})
    panels = ". ".join(f"{label}: " + "; ".join(f"at {n} seeds " + ", ".join(f"{verdict} {curve.loc[n, verdict]:.2f}"
                                                                            for verdict in colors)
                                               for n in marks if n in curve.index)
                       for label, curve in curves.items())
    return Chart(fig, f"Line charts, one per assumed true gap: {title}. Probability of each verdict against the "
                      f"number of seeds per method, with a line at 0.8. {panels}.")


def multitask_throughput_figure(results: list[dict], title: str) -> Chart:
    """Rows per second of mixed-task batches against the number of tasks (log x), relative to a one-task batch
    of the same rows: BitFit's gathered biases and, where peft could hold the adapters, LoRA's ``adapter_names``
    (``benchmarks/multitask.py``)."""
    frame = pd.DataFrame(results).set_index("tasks")
    fig, ax = plt.subplots(figsize=(7, 3.6))
    lines = []
    paths = (("BitFit mixed", "BitFit, mixed batch"), ("LoRA mixed", "LoRA r=8, mixed (peft adapter_names)"))
    for index, (path, label) in enumerate(paths):
        if f"{path} rows/s" not in frame:
            continue
        relative = (frame[f"{path} rows/s"] / frame["one-task batch rows/s"]).dropna()
        ax.plot(relative.index, relative, "o-", color=f"C{index}", label=label)
        lines.append(f"{label}: " + ", ".join(f"{tasks:,} tasks {value:.2f}" for tasks, value in relative.items()))
    ax.axhline(1.0, color="0.4", linestyle=":", label="one-task batch of the same rows")
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(frame.index), [f"{tasks:,}" for tasks in frame.index])
    ax.set_xlabel("distinct tasks in the batch")
    ax.set_ylabel("throughput / one-task batch")
    ax.set_ylim(bottom=0)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return Chart(fig, f"Line chart, log x-axis: {title}. Throughput of a mixed-task batch relative to a one-task "
                      f"batch of the same rows, against the number of distinct tasks. " + "; ".join(lines) + ".")


def precision_throughput_figure(rows: list[dict], title: str) -> Chart:
    """Rows per second of mixed-task batches at each number of tasks, one bar per backbone format (fp32, bf16,
    int8), with the one-task batch of the same rows marked on each bar (``benchmarks/multitask.py``)."""
    frame = pd.DataFrame(rows)
    counts, precisions = sorted(frame["tasks"].unique()), list(dict.fromkeys(frame["precision"]))
    fig, ax = plt.subplots(figsize=(7, 3.6))
    width = 0.8 / len(precisions)
    lines = []
    for index, precision in enumerate(precisions):
        found = frame[frame["precision"] == precision].set_index("tasks").reindex(counts)
        where = np.arange(len(counts)) + (index - (len(precisions) - 1) / 2) * width
        ax.bar(where, found["mixed rows/s"], width * 0.9, color=f"C{index}", label=f"{precision} backbone, mixed")
        ax.scatter(where, found["one-task rows/s"], marker="_", s=300, color="black", zorder=3,
                   label="one-task batch of the same rows" if index == 0 else None)
        lines.append(f"{precision}: " + ", ".join(f"{tasks:,} tasks {value:.0f} rows/s"
                                                  for tasks, value in found["mixed rows/s"].items()))
    ax.set_xticks(range(len(counts)), [f"{tasks:,}" for tasks in counts])
    ax.set_xlabel("distinct tasks in the batch")
    ax.set_ylabel("rows per second")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return Chart(fig, f"Bar chart: {title}. Rows per second of a mixed-task batch for each backbone format, "
                      f"with a black mark at the one-task batch of the same rows: " + "; ".join(lines) + ".")


def latency_figure(latencies_ms: list[float], title: str) -> Chart:
    """A histogram of request latencies (milliseconds) with the 50th, 95th and 99th percentiles marked."""
    values = np.asarray(latencies_ms)
    marks = {f"p{q}": float(np.percentile(values, q)) for q in (50, 95, 99)}
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.hist(values, bins=40, color="C0", alpha=0.8)
    for index, (label, value) in enumerate(marks.items()):
        ax.axvline(value, color=f"C{index + 1}", linestyle="--", label=f"{label}: {value:.0f} ms")
    ax.set_xlabel("latency of one request (ms)")
    ax.set_ylabel("requests")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    listed = ", ".join(f"{label} {value:.0f} ms" for label, value in marks.items())
    return Chart(fig, f"Histogram: {title}. {len(values)} requests, latency from {values.min():.0f} to "
                      f"{values.max():.0f} ms; percentiles {listed}.")


def _task_title(task: str) -> str:
    """A GLUE task as its readers know it ('stsb' -> 'STS-B'); any other name unchanged."""
    from ..data import glue

    try:
        return glue.get_task(task).folder
    except BitFitError:  # not a GLUE task: the toy's 'digits 5-9'
        return task


def _layer_axis(ax, task: str) -> None:
    """A panel whose x axis is the encoder's layers, titled by its task."""
    ax.set_xlabel("layer (0: embeddings)")
    ax.set_title(_task_title(task), fontsize=10)
    ax.grid(alpha=0.3)


def _panels_done(fig, axes, ylabel: str, title: str, legend_size: int = 8) -> None:
    """The y label on the first panel, the legend beside the last, the figure's title."""
    axes[0, 0].set_ylabel(ylabel)
    axes[0, -1].legend(fontsize=legend_size, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()


def start_bars(means: pd.DataFrame, title: str, chance: dict[str, float] | None = None) -> Chart:
    """Expose or learn (notebook 09): one panel per task, one group of bars per method (Full-FT, BitFit,
    Frozen), one bar per start of the encoder (columns of ``means``, rows (task, method): ``expose.start_means``).
    ``chance`` draws each task's chance level as a dashed line."""
    tasks = list(dict.fromkeys(means.index.get_level_values(0)))
    starts = list(means.columns)
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.6 * len(tasks) + 0.6, 3.4), squeeze=False, sharey=True)
    described = []
    for ax, task in zip(axes[0], tasks, strict=True):
        table = means.loc[task]
        methods = list(table.index)
        width = 0.8 / len(starts)
        for index, start in enumerate(starts):
            x = np.arange(len(methods)) + (index - (len(starts) - 1) / 2) * width
            ax.bar(x, table[start], width, color=["tab:blue", "tab:gray", "tab:orange"][index % 3],
                   label=f"from {start}")
        if chance and task in chance:
            ax.axhline(chance[task], color="black", linestyle="dashed", linewidth=1, label="chance")
        ax.set_xticks(range(len(methods)), [display_name(m) for m in methods])
        ax.set_title(_task_title(task), fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        described.append(f"{_task_title(task)}: " + "; ".join(
            f"{display_name(m)} " + ", ".join(f"{s} {table.loc[m, s]:.1f}" for s in starts if pd.notna(table.loc[m, s]))
            for m in methods))
    _panels_done(fig, axes, "score (x100)", title)
    return Chart(fig, f"Grouped bars: {title}. Mean score (x100) over seeds, per method and start. "
                      + ". ".join(described) + ".")


def probe_curves(probes: pd.DataFrame, methods: pd.DataFrame, title: str) -> Chart:
    """What is linearly readable where (notebook 09): one panel per task, a probe's dev score per layer for
    each start (``probes``: columns task, start, layer, score), and the pre-trained runs' mean scores as
    horizontal lines (``methods``: index task, columns methods)."""
    tasks = list(dict.fromkeys(probes["task"]))
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.8 * len(tasks) + 0.8, 3.4), squeeze=False)
    described = []
    for ax, task in zip(axes[0], tasks, strict=True):
        rows = probes[probes["task"] == task]
        parts = []
        for index, (start, curve) in enumerate(rows.groupby("start", sort=False)):
            ax.plot(curve["layer"], curve["score"], "o-", color=["tab:blue", "tab:gray", "tab:orange"][index % 3],
                    label=f"probe, {start} encoder")
            parts.append(f"probe on the {start} encoder, layers 0 to {curve['layer'].max()}: "
                         + _listing(curve["score"]))
        for index, (method, value) in enumerate(methods.loc[task].items()):
            ax.axhline(value, color=f"C{index + 3}", linestyle="dashed", linewidth=1,
                       label=f"{display_name(method)} (trained, pre-trained start)")
            parts.append(f"{display_name(method)} {value:.1f}")
        _layer_axis(ax, task)
        described.append(f"{_task_title(task)}: " + "; ".join(parts))
    _panels_done(fig, axes, "dev score (x100)", title, legend_size=7)
    return Chart(fig, f"Line chart: {title}. " + ". ".join(described) + ".")


def cka_curves(cka: pd.DataFrame, title: str) -> Chart:
    """How much fine-tuning changed each layer (notebook 09): one panel per task, linear CKA between a layer's
    features before and after training (1: unchanged) for each method (``cka``: columns task, method, layer,
    cka)."""
    tasks = list(dict.fromkeys(cka["task"]))
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.6 * len(tasks) + 0.6, 3.2), squeeze=False, sharey=True)
    described = []
    for ax, task in zip(axes[0], tasks, strict=True):
        parts = []
        for index, (method, curve) in enumerate(cka[cka["task"] == task].groupby("method", sort=False)):
            ax.plot(curve["layer"], curve["cka"], "o-", color=f"C{index}", label=display_name(method))
            parts.append(f"{display_name(method)} " + _listing(curve["cka"], 3))
        _layer_axis(ax, task)
        described.append(f"{_task_title(task)}, layers 0 to {cka['layer'].max()}: " + "; ".join(parts))
    _panels_done(fig, axes, "CKA, before vs after (1: unchanged)", title)
    return Chart(fig, f"Line chart: {title}. " + ". ".join(described) + ".")


def decision_rule_figure(intervals: dict[str, tuple[float, float]], margin: float, verdicts: dict[str, str],
                         title: str) -> Chart:
    """The decision rule on a number line (notebook 03): the equivalence band ± ``margin`` shaded, and one
    90% interval per row (``intervals``: label -> (low, high)) with its verdict (``verdicts``) beside it."""
    fig, ax = plt.subplots(figsize=(8, 0.6 + 0.55 * len(intervals)))
    ax.axvspan(-margin, margin, color="tab:green", alpha=0.15, label=f"equivalence band ±{margin:g}")
    ax.axvline(0, color="black", linewidth=0.8)
    for row, (label, (low, high)) in enumerate(intervals.items()):
        y = len(intervals) - 1 - row
        ax.plot([low, high], [y, y], color="tab:blue", linewidth=3, solid_capstyle="butt")
        ax.plot([(low + high) / 2], [y], "o", color="tab:blue")
        ax.text(high + 0.15, y, verdicts[label], va="center", fontsize=9)
    ax.set_yticks(range(len(intervals)), list(reversed(list(intervals))))
    lows, highs = zip(*intervals.values(), strict=True)
    ax.set_xlim(min(*lows, -margin) - 0.5, max(*highs, margin) + 4.0)
    ax.set_xlabel("gap, method minus baseline (points); bar: its 90% interval")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    rows = "; ".join(f"{label}: [{low:+.2f}, {high:+.2f}], {verdicts[label]}"
                     for label, (low, high) in intervals.items())
    return Chart(fig, f"Number line: {title}. Shaded band from {-margin:g} to {margin:g}. Intervals: {rows}.")


# The encoder layer as notebook 01 draws it: (step, bias, the usual name of its matrix), bottom to top
ENCODER_LAYER_STEPS = (("Q, K, V = W x + b", "b_q, b_k, b_v", "W^Q, W^K, W^V"),
                       ("h1 = attention(Q, K, V)", "", ""),
                       ("h2 = W_m1 h1 + b_m1", "b_m1", "W^O (attention output)"),
                       ("h3 = LayerNorm(h2 + x)", "b_LN1", "attention LayerNorm"),
                       ("h4 = GELU(W_m2 h3 + b_m2)", "b_m2", "W_1 (first feed-forward)"),
                       ("h5 = W_m3 h4 + b_m3", "b_m3", "W_2 (second feed-forward)"),
                       ("out = LayerNorm(h5 + h3)", "b_LN2", "output LayerNorm"))


def encoder_layer_diagram(title: str) -> Chart:
    """One encoder layer as a stack of boxes, input at the bottom, each step's bias beside it in red and the
    usual name of its matrix on the left (``ENCODER_LAYER_STEPS``)."""
    fig, ax = plt.subplots(figsize=(8, 5.2))
    for row, (step, bias, usual) in enumerate(ENCODER_LAYER_STEPS):
        y = 1.0 + row
        ax.add_patch(plt.Rectangle((3.0, y - 0.32), 4.0, 0.64, facecolor="0.93", edgecolor="0.4"))
        ax.text(5.0, y, step, ha="center", va="center", fontsize=9)
        if bias:
            ax.text(7.3, y, bias, ha="left", va="center", fontsize=10, color="tab:red", fontweight="bold")
        if usual:
            ax.text(2.8, y, usual, ha="right", va="center", fontsize=8, color="0.35")
        if row:
            ax.annotate("", (5.0, y - 0.34), (5.0, y - 0.66), arrowprops={"arrowstyle": "->", "color": "0.4"})
    ax.text(5.0, 0.05, "x: the layer's input (one vector per token)", ha="center", va="center", fontsize=9)
    ax.annotate("", (5.0, 0.66), (5.0, 0.2), arrowprops={"arrowstyle": "->", "color": "0.4"})
    ax.set_xlim(0, 10)
    ax.set_ylim(-0.2, len(ENCODER_LAYER_STEPS) + 0.6)
    ax.axis("off")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    steps = "; ".join(f"{step}" + (f" (bias {bias}; usual name {usual})" if bias else "")
                      for step, bias, usual in ENCODER_LAYER_STEPS)
    return Chart(fig, f"Diagram: {title}. From the input x upward: {steps}.")
