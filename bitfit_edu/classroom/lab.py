"""The classroom lab (notebook 7): choose what trains, see what it costs, train it, stop it, compare it.

A check box per bias group of the paper (b_q ... b_LN2, the embeddings' LayerNorm, the pooler) and one
for the task head, and the first and last of the encoder's layers that train. As they change, the lab counts what would
train, its share of the model, and where it sits on a log scale from one parameter to the whole model:
for the classroom model and, beside it, for BERT-base, both counted from their configs (no weights).
Below, a training panel runs a short real run of BitFit, the chosen biases, Full-FT or Frozen, with
live curves, a Stop button, and a table of finished runs beside the committed grids' results.
"""

from __future__ import annotations

import base64
import html
import io
import math
import threading

import ipywidgets as widgets
import pandas as pd
from matplotlib.figure import Figure
from transformers import TrainerCallback

from ..core.biases import BIAS_GROUPS, HEAD
from ..core.counting import ModelShape, share_of_model
from ..core.methods import display_name
from ..errors import BitFitError
from ..evidence.tables import runs_frame
from ..experiments import grids
from ..experiments.profiles import Profile
from ..experiments.results import ResultStore
from ..experiments.runs import RunConfig, RunRecord
from ..experiments.training import StopWhenAsked, run

LABELS = {"b_LN_emb": "embeddings-LN", "b_pooler": "pooler", HEAD: "head"}


def scaled_layers(layers: tuple[int, int], depth: int, to_depth: int) -> tuple[int, int]:
    """The same share of another model's layers: layers 0-2 of 6 are layers 0-5 of 12."""
    first, last = layers
    return first * to_depth // depth, (last + 1) * to_depth // depth - 1


def log_bar(count: int, total: int, width: int = 320) -> str:
    """An HTML bar from 1 to ``total`` parameters on a log scale, marked at ``count``, with a tick per
    power of ten: 0.1% of a model is invisible on a linear bar."""
    scale = math.log10(total)
    where = 0 if count < 1 else width * math.log10(count) / scale
    ticks = "".join(f'<div style="position:absolute;left:{width * k / scale:.0f}px;top:0;height:14px;'
                    f'border-left:1px solid #999"></div>' for k in range(1, int(scale) + 1))
    return (f'<div style="position:relative;width:{width}px;height:14px;background:#eee">{ticks}'
            f'<div style="position:absolute;left:0;top:3px;height:8px;width:{where:.0f}px;background:#1f77b4">'
            '</div></div>')


class LayerRange:
    """The first and the last layer that train, a labelled drop-down each (a range slider's handles have no
    name a screen reader can read). ``value`` is (first, last), in order whichever way they were chosen."""

    def __init__(self, depth: int):
        self.first = widgets.Dropdown(options=list(range(depth)), value=0, description="from layer")
        self.last = widgets.Dropdown(options=list(range(depth)), value=depth - 1, description="to layer")
        self.widget = widgets.HBox([self.first, self.last])

    @property
    def value(self) -> tuple[int, int]:
        first, last = sorted((self.first.value, self.last.value))
        return first, last

    @value.setter
    def value(self, layers: tuple[int, int]) -> None:
        self.first.value, self.last.value = layers

    def observe(self, callback, names: str = "value") -> None:
        for control in (self.first, self.last):
            control.observe(callback, names=names)


class WhatTrains:
    """Check boxes, the layers that train and, for each model, the trainable count, its % and a log-scale bar.
    A group the first model does not read (the pooler, under the mean readout) counts for the reference only."""

    def __init__(self, model: ModelShape, reference: ModelShape | None = None):
        self.model, self.reference = model, reference
        present = {t.group for shape in (model, reference) if shape for t in shape.terms}
        self.boxes = {group: widgets.Checkbox(value=True, description=LABELS.get(group, group), indent=False,
                                              layout=widgets.Layout(width="130px"))
                      for group in (*BIAS_GROUPS, HEAD) if group in present or group == HEAD}
        self.layers = LayerRange(model.depth)
        self.summary = widgets.HTML()
        for control in (*self.boxes.values(), self.layers):
            control.observe(lambda _: self.update(), names="value")
        self.update()
        boxes = widgets.HBox(list(self.boxes.values()), layout=widgets.Layout(flex_flow="row wrap"))
        self.widget = widgets.VBox([boxes, self.layers.widget, self.summary])

    @property
    def groups(self) -> tuple[str, ...]:
        """The chosen bias groups, in the paper's order."""
        return tuple(g for g in BIAS_GROUPS if g in self.boxes and self.boxes[g].value)

    @property
    def head(self) -> bool:
        return self.boxes[HEAD].value

    def counts(self) -> dict[str, tuple[int, int]]:
        """Per model: (trainable parameters, all parameters) for the current choice."""
        found = {self.model.name: (self.model.trainable(set(self.groups), self.layers.value, self.head),
                                   self.model.encoder)}
        if self.reference:
            layers = scaled_layers(self.layers.value, self.model.depth, self.reference.depth)
            found[self.reference.name] = (self.reference.trainable(set(self.groups), layers, self.head),
                                          self.reference.encoder)
        return found

    def update(self) -> None:
        cell = "<td style='text-align:right'>{}</td>"
        rows = "".join(f"<tr><td>{name}</td>{cell.format(f'{count:,}')}"
                       f"{cell.format(f'{share_of_model(count, total):.3f}%')}"
                       f"<td>{log_bar(count, total)}</td></tr>" for name, (count, total) in self.counts().items())
        header = "".join(f"<th>{title}</th>" for title in ("model", "trains", "of the model",
                                                             "on a log scale, 1 to all parameters"))
        self.summary.value = f"<table style='border-spacing: 14px 2px'><tr>{header}</tr>{rows}</table>"

    def _ipython_display_(self) -> None:
        from IPython.display import display
        display(self.widget)


METHOD_CHOICES = (("BitFit", "bitfit"), ("the chosen biases", "chosen"), ("Full-FT", "full"), ("Frozen", "frozen"))


class LiveCurves(TrainerCallback):
    """Redraws the training loss (every step) and the dev score (every evaluation) of a live run into an
    HTML widget, as an image with alt text that reads the curves, and moves a progress bar; safe to run from
    the training thread."""

    def __init__(self, image: widgets.HTML, progress: widgets.IntProgress, title: str):
        self.image, self.progress, self.title = image, progress, title
        self.loss: list[tuple[int, float]] = []
        self.dev: list[tuple[int, float]] = []

    def on_train_begin(self, args, state, control, **kwargs):
        self.progress.max, self.progress.value = state.max_steps, 0

    def on_step_end(self, args, state, control, **kwargs):
        self.progress.value = state.global_step
        control.should_log = True  # a loss point every step for the live curve

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.loss.append((state.global_step, logs["loss"]))
            self.draw()

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if metrics and "eval_dev_score" in metrics:
            self.dev.append((state.global_step, 100 * metrics["eval_dev_score"]))
            self.draw()

    def draw(self) -> None:
        fig = Figure(figsize=(8, 2.6), dpi=80)
        loss, dev = fig.subplots(1, 2)
        for ax, points, label in ((loss, self.loss, "training loss"), (dev, self.dev, "dev score (x100)")):
            if points:
                ax.plot(*zip(*points, strict=True), "o-" if ax is dev else "-")
            ax.set_xlabel("step")
            ax.set_title(label, fontsize=10)
            ax.grid(alpha=0.3)
        fig.suptitle(self.title, fontsize=10)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
        self.image.value = f'<img src="data:image/png;base64,{encoded}" alt="{html.escape(self.alt())}"/>'

    def alt(self) -> str:
        """The curves in words, for a reader who cannot see them."""
        found = [f"Live curves of {self.title}"]
        if self.loss:
            found.append(f"training loss over {self.loss[-1][0]} steps, from {self.loss[0][1]:.2f} to "
                         f"{self.loss[-1][1]:.2f}")
        if self.dev:
            found.append(f"dev score (x100) at {len(self.dev)} evaluations: "
                         + ", ".join(f"{score:.1f}" for _, score in self.dev))
        return "; ".join(found) + "."


class Lab:
    """The whole lab: ``WhatTrains`` above a training panel. Train runs a short real run in a thread (the
    notebook stays responsive, so Stop can be pressed), with live curves and a progress bar; Stop ends it
    after the current step and keeps what was measured. Each finished run joins a table beside the
    committed grid's results for the same task and method, where those exist."""

    def __init__(self, profile: Profile, grid: pd.DataFrame | None = None):
        self.profile, self.grid = profile, grid
        self.picker = WhatTrains(ModelShape.from_config(profile.model, profile.readout),
                                 ModelShape.from_config("bert-base-cased", "cls_pooler"))
        self.task = widgets.Dropdown(options=list(profile.tasks), value=profile.demo_task, description="task")
        sizes = sorted({min(size, profile.train_size or size) for size in (100, 200, 500, 1000, 2000)})
        self.train_size = widgets.Dropdown(options=sizes, value=sizes[-2] if len(sizes) > 1 else sizes[0],
                                           description="examples")
        self.steps = widgets.Dropdown(options=list(range(20, 301, 20)), value=60, description="steps")
        self.method = widgets.ToggleButtons(options=METHOD_CHOICES, value="bitfit")
        self.train_button = widgets.Button(description="Train", icon="play")
        self.stop_button = widgets.Button(description="Stop", icon="stop", disabled=True)
        self.progress = widgets.IntProgress(value=0, min=0, max=1, description="steps")
        self.curves = widgets.HTML()
        self.status = widgets.HTML()
        self.table = widgets.HTML()
        self.finished: list[tuple[RunRecord, bool]] = []  # (record, stopped early)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.train_button.on_click(lambda _: self.train())
        self.stop_button.on_click(lambda _: self.stop())
        settings = widgets.HBox([self.task, self.train_size, self.steps])
        buttons = widgets.HBox([self.train_button, self.stop_button, self.progress])
        self.widget = widgets.VBox([self.picker.widget, settings, self.method, buttons, self.status, self.curves,
                                    self.table])

    def config(self) -> RunConfig:
        """The run the panel describes: the task, size and steps chosen, evaluated 5 times on (at most)
        500 dev examples, in fp32 unless this machine has bf16 kernels and the profile trains in bf16."""
        method, chosen = self.method.value, {}
        if method == "chosen":
            if not self.picker.groups:
                raise BitFitError("no bias group is ticked: tick at least one (the head always trains)")
            every_layer = self.picker.layers.value == (0, self.picker.model.depth - 1)
            chosen = {"groups": self.picker.groups, "layers": None if every_layer else self.picker.layers.value}
        return RunConfig.for_demo(self.profile, self.task.value, "bitfit" if method == "chosen" else method,
                                  train_size=self.train_size.value, max_steps=self.steps.value,
                                  eval_every=self.steps.value // 5, dev_size=min(self.profile.dev_size or 500, 500),
                                  train_eval_size=min(self.profile.demo_train_eval_size or 100, 100), **chosen)

    def train(self, wait: bool = False) -> None:
        """Start a run of ``config()`` in the background (``wait``: return when it has finished)."""
        if self._thread and self._thread.is_alive():
            self.status.value = "A run is going: wait for it, or press Stop."
            return
        try:
            config = self.config()
        except BitFitError as error:
            self.status.value = f"<b>Cannot train that:</b> {html.escape(str(error))}"
            return
        self._stop.clear()
        self.train_button.disabled, self.stop_button.disabled = True, False
        self.status.value = f"Training {html.escape(display_name(config.label))} on {config.task}..."
        live = LiveCurves(self.curves, self.progress, f"{display_name(config.label)} on {config.task}")
        self._thread = threading.Thread(target=self._run, args=(config, live), daemon=True)
        self._thread.start()
        if wait:
            self.wait()

    def _run(self, config: RunConfig, live: LiveCurves) -> None:
        try:
            record = run(config, progress=False, callbacks=[live, StopWhenAsked(self._stop)])
        except BitFitError as error:
            self.status.value = f"<b>The run failed:</b> {html.escape(str(error))}"
        else:
            stopped = record.epochs[-1].step < config.max_steps
            self.finished.append((record, stopped))
            self.status.value = (f"{'Stopped' if stopped else 'Finished'} after {record.epochs[-1].step} steps: "
                                 f"best dev score {100 * record.best.score:.1f} (x100), "
                                 f"{record.timing.wall_seconds:.0f} s.")
            self.table.value = comparison(self.finished, self.grid).to_html(na_rep="")
        finally:
            self.train_button.disabled, self.stop_button.disabled = False, True

    def stop(self) -> None:
        """End the current run after its current step."""
        self._stop.set()
        self.status.value = "Stopping after this step..."

    def wait(self, timeout: float | None = None) -> None:
        if self._thread:
            self._thread.join(timeout)

    def _ipython_display_(self) -> None:
        from IPython.display import display
        display(self.widget)


def comparison(finished: list[tuple[RunRecord, bool]], grid: pd.DataFrame | None) -> pd.DataFrame:
    """This lab's runs, each beside the committed grid's runs of the same task and method (mean ± std of
    the best dev score over seeds, with their sizes), where the grid has them."""
    rows = []
    for number, (record, stopped) in enumerate(finished, start=1):
        steps = record.epochs[-1].step
        rows.append({"run": f"lab #{number}", "task": record.task, "method": display_name(record.label),
                     "training": f"{record.train_size:,} examples, {steps} steps{' (stopped)' if stopped else ''}",
                     "trains": f"{record.params.trainable:,}", "best dev (x100)": f"{100 * record.best.score:.1f}"})
        same = None if grid is None else grid[(grid["task"] == record.task) & (grid["method"] == record.label)]
        if same is not None and len(same):
            rows.append({"run": "committed grid", "task": record.task, "method": display_name(record.label),
                         "training": f"{same['train_size'].iloc[0]:,} examples, {same['epochs'].iloc[0]} epochs, "
                                     f"{len(same)} seeds",
                         "trains": f"{same['trainable'].iloc[0]:,}",
                         "best dev (x100)": f"{same['best'].mean():.1f} ± {same['best'].std():.1f}"})
    return pd.DataFrame(rows).set_index("run")


def committed_grid(profile: Profile) -> pd.DataFrame:
    """The committed main and ablation runs of ``profile`` (``runs_frame``), for the lab's comparisons."""
    configs = grids.experiment_configs(profile, "main") + grids.experiment_configs(profile, "ablation")
    records, _ = ResultStore.committed(profile.name).load(configs)
    return runs_frame(records)
