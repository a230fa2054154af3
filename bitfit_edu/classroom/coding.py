"""Coding exercises: a function the student writes, tried on inputs the notebook never prints.

Each exercise names the function to write and a few inputs it is tried on. ``exercises.check(key,
your_function)`` calls the student's function on every input and compares what it returns with what the model
solution returns. The model solutions, written as a student would write them, are in the answer key (``key``),
which a graded class's student build leaves out. A wrong result gets a hint naming which input failed, never
the expected value. The tests check every model solution against the package's own code: the encoder's
equations, the claims' Welch interval, the bias census, peft's LoRA and the runs' bias changes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Case:
    """One input a student's function is tried on, and a few words that say what it is (shown on failure)."""

    about: str
    arguments: Callable[[], tuple]  # built when tried: a case may hold tensors or a model


# The inputs each is tried on: none of them appears in a notebook.

def _attention_inputs(tokens: int, width: int, seed: int, key_bias_scale: float = 1.0) -> tuple:
    generator = torch.Generator().manual_seed(seed)
    draw = lambda *shape: torch.randn(*shape, generator=generator)  # noqa: E731
    x = draw(tokens, width)
    W_q, W_k, W_v = (draw(width, width) / math.sqrt(width) for _ in range(3))
    b_q, b_k, b_v = draw(width), key_bias_scale * draw(width), draw(width)
    return x, W_q, b_q, W_k, b_k, W_v, b_v


def _bias_snapshots(seed: int) -> tuple[dict, dict]:
    generator = torch.Generator().manual_seed(seed)
    shapes = {"encoder.layer.0.attention.self.query.bias": 8, "encoder.layer.0.intermediate.dense.bias": 32,
              "encoder.layer.1.output.LayerNorm.bias": 8}
    before = {name: torch.randn(width, generator=generator) for name, width in shapes.items()}
    after = {name: value + 0.01 * (i + 1) * torch.randn(value.shape, generator=generator)
             for i, (name, value) in enumerate(before.items())}
    return before, after


def _tiny_bert(method: str, groups: str = "all"):
    from transformers import BertConfig, BertForSequenceClassification

    from ..core.methods import prepare

    torch.manual_seed(0)
    config = BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=32, num_labels=3)
    model = BertForSequenceClassification(config)
    prepare(model, method, groups)
    return (model,)


def _toy_vit_head_only():
    from ..experiments import vision

    model = vision.new_vit(len(vision.TASK_CLASSES), seed=0)
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name.startswith("classifier."))
    return (model,)


@dataclass(frozen=True)
class CodingExercise:
    """A function to write: its name and signature, and the inputs it is tried on."""

    signature: str
    cases: tuple[Case, ...]
    tolerance: float = 1e-4  # relative, for every number the function returns

    def outputs(self, function: Callable) -> list:
        """What ``function`` returns on every case, as plain numbers and lists; a case that raises gives
        the error's one line, so one bad case never hides the others."""
        found = []
        for case in self.cases:
            try:
                found.append(plain(function(*case.arguments())))
            except Exception as error:  # the student's code: any error is an answer to report
                found.append(f"raised {type(error).__name__}: {error}"[:200])
        return found

    def first_failure(self, outputs: list, expected: list) -> str | None:
        """The first case whose output differs from ``expected`` (the model solution's), as the words that say
        what it is."""
        if not isinstance(outputs, list) or len(outputs) != len(self.cases):
            return "the answer is not a function's outputs"
        for case, got, want in zip(self.cases, outputs, expected, strict=True):
            if not close(got, want, self.tolerance):
                return case.about + (f" ({got})" if isinstance(got, str) and got.startswith("raised") else "")
        return None


def plain(value):
    """A returned value as plain Python (numbers, strings, lists, dicts) so that it compares and records as JSON:
    tensors and arrays become lists, tuples lists, sets sorted lists."""
    if isinstance(value, torch.Tensor | np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, set | frozenset):
        return sorted(plain(v) for v in value)
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return value


def close(got, want, tolerance: float) -> bool:
    """Whether ``got`` matches ``want``: numbers within ``tolerance`` (relative, and 1e-6 absolute), lists and
    dicts entry by entry."""
    if isinstance(want, bool) or isinstance(got, bool):
        return got == want
    if isinstance(want, int | float):
        return (isinstance(got, int | float) and math.isfinite(got)
                and math.isclose(got, want, rel_tol=tolerance, abs_tol=1e-6))
    if isinstance(want, list):
        return (isinstance(got, list) and len(got) == len(want)
                and all(close(g, w, tolerance) for g, w in zip(got, want, strict=True)))
    if isinstance(want, dict):
        return (isinstance(got, dict) and set(got) == set(want)
                and all(close(got[k], want[k], tolerance) for k in want))
    return got == want


CODING: dict[str, CodingExercise] = {
    "01.attention_head": CodingExercise(
        "attention_head(x, W_q, b_q, W_k, b_k, W_v, b_v)",
        (Case("4 tokens of width 8", lambda: _attention_inputs(4, 8, seed=11)),
         Case("6 tokens of width 16, with a large b_k", lambda: _attention_inputs(6, 16, seed=12, key_bias_scale=50)),
         Case("a single token of width 4", lambda: _attention_inputs(1, 4, seed=13)))),
    "03.welch_interval": CodingExercise(
        "welch_interval(method_scores, baseline_scores, level=0.90)",
        (Case("five seeds against five, made-up scores", lambda: ([81.2, 80.4, 82.0, 79.9, 81.5],
                                                                  [82.6, 82.9, 81.8, 83.4, 82.2])),
         Case("three seeds against seven, made-up scores, at level 0.95",
              lambda: ([55.0, 58.5, 52.1], [60.2, 59.8, 61.5, 58.9, 60.0, 62.3, 59.1], 0.95)),
         Case("ten seeds against four, one spread much wider than the other, made-up scores",
              lambda: ([70.1, 70.3, 69.8, 70.0, 70.2, 69.9, 70.4, 70.0, 69.7, 70.1], [64.0, 75.5, 68.2, 72.9])))),
    "04.trained_entries": CodingExercise(
        "trained_entries(hidden, layers, groups)",
        (Case("b_q and b_m2 in BERT-large (H = 1024, 24 layers)", lambda: (1024, 24, {"b_q", "b_m2"})),
         Case("all eight terms of a layer in BERT-base (H = 768, 12 layers)",
              lambda: (768, 12, {"b_q", "b_k", "b_v", "b_m1", "b_LN1", "b_m2", "b_m3", "b_LN2"})),
         Case("the two LayerNorm biases of a 4-layer model with H = 2048", lambda: (2048, 4, {"b_LN1", "b_LN2"})))),
    "05.mean_abs_change": CodingExercise(
        "mean_abs_change(before, after)",
        (Case("three biases of two layers, moved by different amounts", lambda: _bias_snapshots(seed=21)),
         Case("the same names drawn again", lambda: _bias_snapshots(seed=22)))),
    "07.trainable_percent": CodingExercise(
        "trainable_percent(model)",
        (Case("a tiny BERT (H = 16, 2 layers) ready for BitFit", lambda: _tiny_bert("bitfit")),
         Case("the same tiny BERT with b_m2 alone", lambda: _tiny_bert("bitfit", ["b_m2"])),
         Case("the same tiny BERT frozen (head only)", lambda: _tiny_bert("frozen")),
         Case("notebook 9's toy vision transformer with only its head training", _toy_vit_head_only))),
    "08.lora_entries": CodingExercise(
        "lora_entries(hidden, layers, rank, adapted)",
        (Case("rank 8 on W_q and W_v of BERT-large (H = 1024, 24 layers)", lambda: (1024, 24, 8, 2)),
         Case("rank 16 on W_q, W_k, W_v and W_m1 of BERT-base (H = 768, 12 layers)", lambda: (768, 12, 16, 4)),
         Case("rank 1 on W_v of the classroom model (H = 384, 6 layers)", lambda: (384, 6, 1, 1)))),
}
