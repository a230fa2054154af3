"""The classroom lab (notebook 7): choose what trains, and see at once what it costs.

A check box per bias group of the paper (b_q ... b_LN2, the embeddings' LayerNorm, the pooler) and one
for the task head, and a slider over the encoder's layers. As they change, the lab counts what would
train, its share of the model, and where it sits on a log scale from one parameter to the whole model:
for the classroom model and, beside it, for BERT-base, both counted from their configs (no weights).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import ipywidgets as widgets

from .accounting import load_config, meta_encoder
from .biases import BIAS_GROUPS, BiasTerm, bias_census

HEAD = "head"
LABELS = {"b_LN_emb": "embeddings-LN", "b_pooler": "pooler", HEAD: "head"}


@dataclass(frozen=True)
class ModelShape:
    """What the lab counts on: a classifier's bias terms, its depth, its parameters and its head."""

    name: str
    terms: tuple[BiasTerm, ...]
    depth: int
    total: int  # every parameter of the classifier as it is read (encoder, and head)
    head: int

    @classmethod
    def from_config(cls, model_name: str, readout: str, num_labels: int = 2) -> ModelShape:
        """Shapes from the model's config alone. The mean readout drops the pooler (``readout``)."""
        encoder = meta_encoder(model_name)
        pooler = {name for name, _ in encoder.named_parameters() if name.startswith("pooler.")}
        dropped = pooler if readout == "mean" else set()
        terms = tuple(t for t in bias_census(encoder) if t.name not in dropped)
        hidden = load_config(model_name).hidden_size
        head = hidden * num_labels + num_labels
        encoder_total = sum(p.numel() for name, p in encoder.named_parameters() if name not in dropped)
        return cls(model_name.split("/")[-1], terms, encoder.config.num_hidden_layers, encoder_total + head, head)

    def trainable(self, groups: set[str], layers: tuple[int, int], head: bool) -> int:
        """Parameters that train: the chosen groups' bias terms in layers ``layers`` (first, last; terms
        outside the layers count when their group is chosen), and the head if ``head``."""
        first, last = layers
        chosen = sum(t.numel for t in self.terms
                     if t.group in groups and (t.layer is None or first <= t.layer <= last))
        return chosen + (self.head if head else 0)


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


class WhatTrains:
    """Check boxes, a layer slider and, for each model, the trainable count, its % and a log-scale bar. A
    group the first model does not read (the pooler, under the mean readout) counts for the reference only."""

    def __init__(self, model: ModelShape, reference: ModelShape | None = None):
        self.model, self.reference = model, reference
        present = {t.group for shape in (model, reference) if shape for t in shape.terms}
        self.boxes = {group: widgets.Checkbox(value=True, description=LABELS.get(group, group), indent=False,
                                              layout=widgets.Layout(width="130px"))
                      for group in (*BIAS_GROUPS, HEAD) if group in present or group == HEAD}
        self.layers = widgets.IntRangeSlider(value=(0, model.depth - 1), min=0, max=model.depth - 1,
                                             description="layers", continuous_update=True)
        self.summary = widgets.HTML()
        for control in (*self.boxes.values(), self.layers):
            control.observe(lambda _: self.update(), names="value")
        self.update()
        boxes = widgets.HBox(list(self.boxes.values()), layout=widgets.Layout(flex_flow="row wrap"))
        self.widget = widgets.VBox([boxes, self.layers, self.summary])

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
                                   self.model.total)}
        if self.reference:
            layers = scaled_layers(self.layers.value, self.model.depth, self.reference.depth)
            found[self.reference.name] = (self.reference.trainable(set(self.groups), layers, self.head),
                                          self.reference.total)
        return found

    def update(self) -> None:
        cell = "<td style='text-align:right'>{}</td>"
        rows = "".join(f"<tr><td>{name}</td>{cell.format(f'{count:,}')}{cell.format(f'{100 * count / total:.3f}%')}"
                       f"<td>{log_bar(count, total)}</td></tr>" for name, (count, total) in self.counts().items())
        self.summary.value = ("<table><tr><th>model</th><th>trains</th><th>of the model</th>"
                              "<th>on a log scale, 1 to all parameters</th></tr>" + rows + "</table>")

    def _ipython_display_(self) -> None:
        from IPython.display import display
        display(self.widget)
