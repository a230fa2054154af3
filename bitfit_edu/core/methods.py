"""Fine-tuning methods behind one interface: which parameters (or which entries of them) train.

================ ==========================================================================
``full``         every parameter (Full-FT)
``bitfit``       the bias terms of the chosen groups (default: all) and the task head
``frozen``       the task head only
``rand_uniform`` N random entries of the encoder layers' weight matrices, N = the bias count
``rand_row_col`` whole random rows or columns of those matrices, N entries in all
``lora_r8`` ...  LoRA, IA3 and BEFT through peft (``adapters.PEFT_METHODS``)
================ ==========================================================================

The random baselines train a masked subset of a weight matrix: a gradient hook zeroes the gradient
of every other entry. With AdamW and no weight decay on those matrices, a zero gradient keeps the
optimizer's moments at zero, so the update of an untouched entry is exactly zero: its bits never change.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..errors import BitFitError, unknown_choice
from . import adapters
from .biases import BIAS_GROUPS, BiasTerm, bias_census, bias_parameters, head_parameters, resolve_groups

METHODS = {
    "full": "Full fine-tuning: every parameter",
    "bitfit": "BitFit: the bias terms (all groups, or a chosen subset) and the head",
    "frozen": "Frozen encoder: the head only",
    "rand_uniform": "random entries of the weight matrices, as many as the biases, and the head",
    "rand_row_col": "random rows/columns of the weight matrices, as many entries as the biases, and the head",
    **adapters.PEFT_METHODS,
}
# Every method's name as tables, figures and widgets show it (the one place display names live)
DISPLAY_NAMES = {"full": "Full-FT", "bitfit": "BitFit", "frozen": "Frozen", "rand_uniform": "random entries",
                 "rand_row_col": "random rows/columns", "lora_r8": "LoRA r=8 (W_q, W_v)",
                 "lora_r3": "LoRA r=3 (W_q, W_v)", "ia3": "IA3", "beft": "BEFT (W_v)",
                 "beft_all": "BEFT (every linear)"}
# Bias groups whose weight matrix W sits beside them (W x + b): where the random baselines draw from.
MATRIX_GROUPS = ("b_q", "b_k", "b_v", "b_m1", "b_m2", "b_m3")


@dataclass
class PreparedModel:
    """A model made ready for one method: what trains, entry by entry."""

    model: nn.Module
    method: str
    groups: tuple[str, ...] | None
    census: tuple[BiasTerm, ...]  # the model's bias terms, taken once, as prepared (after any peft injection)
    masks: dict[str, torch.Tensor] = field(default_factory=dict)  # partially trained tensors

    def trainable(self) -> dict[str, nn.Parameter]:
        return {n: p for n, p in self.model.named_parameters() if p.requires_grad}

    def trainable_entries(self) -> dict[str, int]:
        """What trains, tensor by tensor: the entries training can change (a masked tensor counts its mask only,
        as the random baselines train a few entries of each matrix). Every count of what trains reads this."""
        return {n: int(self.masks[n].sum()) if n in self.masks else p.numel() for n, p in self.trainable().items()}

    def trainable_count(self, include_head: bool = True) -> int:
        """Entries that training can change, with or without the task head's."""
        head = head_parameters(self.model)
        return sum(count for n, count in self.trainable_entries().items() if include_head or n not in head)

    def total_count(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


def method_label(method: str, groups: Iterable[str] | None = None, layers: tuple[int, int] | None = None) -> str:
    """Short name of a method variant: 'bitfit', 'bitfit:b_q+b_m2', 'frozen'..., and with a range of
    layers (first, last) 'bitfit:b_q+b_m2@0-2' (``parse_label`` reads the method and groups, ``display_name``
    the layers)."""
    within = "" if layers is None else f"@{layers[0]}-{layers[1]}"
    if method != "bitfit" or groups is None or tuple(groups) in (BIAS_GROUPS, ("all",)):
        return method + within
    return "bitfit:" + "+".join(resolve_groups(groups)) + within


def parse_label(label: str) -> tuple[str, tuple[str, ...] | None]:
    """The method and bias groups a label names: 'bitfit:b_q+b_m2' -> ('bitfit', ('b_q', 'b_m2')),
    'full' -> ('full', None); a range of layers ('@0-2') is left to ``display_name``."""
    variant, _, _ = label.partition("@")
    method, _, groups = variant.partition(":")
    if method not in METHODS or (groups and method != "bitfit"):
        raise unknown_choice("method variant", label, (*METHODS, "bitfit:GROUP+GROUP"))
    return method, resolve_groups(groups.split("+")) if groups else None


def prepare(model: nn.Module, method: str, groups: str | Iterable[str] = "all", seed: int = 0,
            layers: tuple[int, int] | None = None) -> PreparedModel:
    """Freeze ``model`` for ``method``; the task head always trains. Returns what trains. BitFit trains
    the chosen groups' biases in layers ``layers`` (first, last; None: all), and those outside the layers."""
    if method not in METHODS:
        raise unknown_choice("method", method, METHODS)
    selected = resolve_groups(groups) if method == "bitfit" else None
    census = bias_census(model)  # fails early and clearly for models without bias terms
    for p in model.parameters():
        p.requires_grad_(method == "full")
    if method in adapters.PEFT_METHODS:
        adapters.inject(model, method)  # its new parameters train; peft freezes every other
        census = bias_census(model)  # peft moved the wrapped layers' biases to <layer>.base_layer
    for p in head_parameters(model).values():
        p.requires_grad_(True)
    prepared = PreparedModel(model, method, selected, tuple(census))
    if method == "bitfit":
        first, last = layers or (0, math.inf)
        inside = {t.name for t in census if t.layer is None or first <= t.layer <= last}
        for name, p in bias_parameters(model, selected).items():
            p.requires_grad_(name in inside)
    elif method in ("rand_uniform", "rand_row_col"):
        budget = sum(t.numel for t in census)
        matrices = weight_matrices(model, census)
        draw = draw_uniform if method == "rand_uniform" else draw_rows_and_columns
        prepared.masks = draw(matrices, budget, seed)
        for name, mask in prepared.masks.items():
            matrices[name].requires_grad_(True)
            matrices[name].register_hook(_masking_hook(mask))
    return prepared


def weight_matrices(model: nn.Module, census: Iterable[BiasTerm] | None = None) -> dict[str, nn.Parameter]:
    """The weight matrices W_q, W_k, W_v, W_m1, W_m2, W_m3 of every encoder layer, by full name (``census``:
    the model's bias terms, if already taken)."""
    params = dict(model.named_parameters())
    return {t.name[: -len("bias")] + "weight": params[t.name[: -len("bias")] + "weight"]
            for t in (census or bias_census(model)) if t.group in MATRIX_GROUPS}


def _masking_hook(mask: torch.Tensor):
    def hook(grad: torch.Tensor) -> torch.Tensor:
        return grad * mask.to(device=grad.device, dtype=grad.dtype)
    return hook


def draw_uniform(matrices: dict[str, nn.Parameter], budget: int, seed: int) -> dict[str, torch.Tensor]:
    """``budget`` entries drawn uniformly without replacement from all matrices together."""
    sizes = np.array([p.numel() for p in matrices.values()])
    if budget > sizes.sum():
        raise BitFitError(f"cannot draw {budget} entries from {sizes.sum()} weight entries")
    chosen = np.sort(np.random.default_rng(seed).choice(sizes.sum(), size=budget, replace=False))
    starts = np.concatenate([[0], np.cumsum(sizes)])
    masks = {}
    for (name, p), start, stop in zip(matrices.items(), starts[:-1], starts[1:], strict=True):
        flat = torch.zeros(p.numel(), dtype=torch.bool)
        local = chosen[(chosen >= start) & (chosen < stop)] - start
        flat[torch.from_numpy(local)] = True
        masks[name] = flat.view_as(p)
    return {n: m for n, m in masks.items() if m.any()}


def draw_rows_and_columns(matrices: dict[str, nn.Parameter], budget: int, seed: int) -> dict[str, torch.Tensor]:
    """Whole random rows or columns until exactly ``budget`` entries are chosen.

    Lines (a row or a column of one matrix) are taken in random order while they fit the remaining
    budget; a row and a column of the same matrix share one entry, which counts once. If overlaps
    leave a remainder smaller than any free line, the next line in the random order completes it.
    """
    rng = np.random.default_rng(seed)
    names = list(matrices)
    masks = {n: torch.zeros(matrices[n].shape, dtype=torch.bool) for n in names}
    lines = [(n, axis, k) for n in names for axis in (0, 1) for k in range(matrices[n].shape[axis])]
    order = rng.permutation(len(lines))
    remaining = budget
    for index in order:
        name, axis, k = lines[index]
        line = masks[name].select(axis, k)
        new = int((~line).sum())
        if 0 < new <= remaining:
            line.fill_(True)
            remaining -= new
        if remaining == 0:
            break
    for index in order if remaining else ():
        name, axis, k = lines[index]
        line = masks[name].select(axis, k)
        free = (~line).nonzero().flatten()
        if len(free) >= remaining:
            line[free[:remaining]] = True
            remaining = 0
            break
    if remaining:
        raise BitFitError(f"cannot draw {budget} entries from the weight matrices")
    return {n: m for n, m in masks.items() if m.any()}


def optimizer_groups(prepared: PreparedModel, weight_decay: float) -> list[dict]:
    """AdamW parameter groups. Masked matrices never decay: decay would move their untouched entries."""
    masked = [p for n, p in prepared.trainable().items() if n in prepared.masks]
    plain = [p for n, p in prepared.trainable().items() if n not in prepared.masks]
    groups = [{"params": plain, "weight_decay": weight_decay}]
    if masked:
        groups.append({"params": masked, "weight_decay": 0.0})
    return groups


def display_name(label: str) -> str:
    """A method label as a reader sees it: 'bitfit' -> 'BitFit', 'bitfit:b_q+b_m2' -> 'b_q + b_m2',
    'bitfit@0-2' -> 'BitFit, layers 0-2'."""
    variant, _, layers = label.partition("@")
    method, _, groups = variant.partition(":")
    name = " + ".join(groups.split("+")) if groups else DISPLAY_NAMES.get(method, variant)
    return f"{name}, layers {layers}" if layers else name


def readable(table: pd.DataFrame) -> pd.DataFrame:
    """A table as a reader sees it: method labels in its rows and columns by their display names
    ('bitfit:b_q+b_m2' -> 'b_q + b_m2', 'rand_row_col' -> 'random rows/columns'); other names unchanged."""
    return table.rename(index=_readable_name, columns=_readable_name)


def _readable_name(name):
    return display_name(name) if isinstance(name, str) and name.partition(":")[0] in METHODS else name
