"""Coding exercises: a function the student writes, tried on inputs the notebook never prints.

Each exercise has a model solution, written as a student would write it (a few lines of PyTorch, scipy or
arithmetic), and a few inputs it is tried on. ``exercises.check(key, your_function)`` calls the student's
function on every input and compares what it returns with what the model solution returns. A wrong result
gets a hint naming which input failed, never the expected value. The tests check every model solution
against the package's own code: the encoder's equations, the claims' Welch interval, the bias census,
peft's LoRA and the runs' bias changes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats


@dataclass(frozen=True)
class Case:
    """One input a student's function is tried on, and a few words that say what it is (shown on failure)."""

    about: str
    arguments: Callable[[], tuple]  # built when tried: a case may hold tensors or a model


# The model solutions, as a student would write them.

def attention_head(x, W_q, b_q, W_k, b_k, W_v, b_v):
    """One attention head with its biases: softmax(Q K^T / sqrt(d)) V for the tokens (rows) of x."""
    Q, K, V = x @ W_q.T + b_q, x @ W_k.T + b_k, x @ W_v.T + b_v
    return torch.softmax(Q @ K.T / math.sqrt(Q.shape[-1]), dim=-1) @ V


def welch_interval(method_scores, baseline_scores, level=0.90):
    """The `level` Welch t-interval of mean(method_scores) - mean(baseline_scores): (low, high)."""
    a, b = np.asarray(method_scores, dtype=float), np.asarray(baseline_scores, dtype=float)
    var_a, var_b = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(var_a + var_b)
    df = (var_a + var_b) ** 2 / (var_a ** 2 / (len(a) - 1) + var_b ** 2 / (len(b) - 1))
    t = stats.t.ppf(0.5 + level / 2, df)
    gap = a.mean() - b.mean()
    return gap - t * se, gap + t * se


def trained_entries(hidden, layers, groups):
    """Bias entries trained when the bias terms named in `groups` train in every one of `layers` layers:
    b_m2 is 4H wide (the feed-forward layer), every other term of a layer H wide."""
    return layers * sum(4 * hidden if group == "b_m2" else hidden for group in groups)


def mean_abs_change(before, after):
    """Mean |after - before| of every tensor, by name: the measure of the paper's Figure 1."""
    return {name: (after[name] - before[name]).abs().mean().item() for name in before}


def trainable_percent(model):
    """The percentage of a model's parameters (head included) that will train: those with requires_grad."""
    total = sum(p.numel() for p in model.parameters())
    return 100 * sum(p.numel() for p in model.parameters() if p.requires_grad) / total


def lora_entries(hidden, layers, rank, adapted):
    """Entries LoRA of rank r trains when it adapts `adapted` H x H matrices in each of `layers` layers:
    A (r x H) and B (H x r) per matrix, the head left out."""
    return layers * adapted * rank * (hidden + hidden)


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
    """A function to write: its name and signature, the model solution, and the inputs it is tried on."""

    signature: str
    solution: Callable
    cases: tuple[Case, ...]
    tolerance: float = 1e-4  # relative, for every number the function returns

    def expected(self) -> list:
        return [plain(self.solution(*case.arguments())) for case in self.cases]

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

    def first_failure(self, outputs: list) -> str | None:
        """The first case whose output differs from the solution's, as the words that say what it is."""
        if not isinstance(outputs, list) or len(outputs) != len(self.cases):
            return "the answer is not a function's outputs"
        for case, got, want in zip(self.cases, outputs, self.expected(), strict=True):
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
        "attention_head(x, W_q, b_q, W_k, b_k, W_v, b_v)", attention_head,
        (Case("4 tokens of width 8", lambda: _attention_inputs(4, 8, seed=11)),
         Case("6 tokens of width 16, with a large b_k", lambda: _attention_inputs(6, 16, seed=12, key_bias_scale=50)),
         Case("a single token of width 4", lambda: _attention_inputs(1, 4, seed=13)))),
    "03.welch_interval": CodingExercise(
        "welch_interval(method_scores, baseline_scores, level=0.90)", welch_interval,
        (Case("five seeds against five, made-up scores", lambda: ([81.2, 80.4, 82.0, 79.9, 81.5],
                                                                  [82.6, 82.9, 81.8, 83.4, 82.2])),
         Case("three seeds against seven, made-up scores, at level 0.95",
              lambda: ([55.0, 58.5, 52.1], [60.2, 59.8, 61.5, 58.9, 60.0, 62.3, 59.1], 0.95)),
         Case("ten seeds against four, one spread much wider than the other, made-up scores",
              lambda: ([70.1, 70.3, 69.8, 70.0, 70.2, 69.9, 70.4, 70.0, 69.7, 70.1], [64.0, 75.5, 68.2, 72.9])))),
    "04.trained_entries": CodingExercise(
        "trained_entries(hidden, layers, groups)", trained_entries,
        (Case("b_q and b_m2 in BERT-large (H = 1024, 24 layers)", lambda: (1024, 24, {"b_q", "b_m2"})),
         Case("all eight terms of a layer in BERT-base (H = 768, 12 layers)",
              lambda: (768, 12, {"b_q", "b_k", "b_v", "b_m1", "b_LN1", "b_m2", "b_m3", "b_LN2"})),
         Case("the two LayerNorm biases of a 4-layer model with H = 2048", lambda: (2048, 4, {"b_LN1", "b_LN2"})))),
    "05.mean_abs_change": CodingExercise(
        "mean_abs_change(before, after)", mean_abs_change,
        (Case("three biases of two layers, moved by different amounts", lambda: _bias_snapshots(seed=21)),
         Case("the same names drawn again", lambda: _bias_snapshots(seed=22)))),
    "07.trainable_percent": CodingExercise(
        "trainable_percent(model)", trainable_percent,
        (Case("a tiny BERT (H = 16, 2 layers) ready for BitFit", lambda: _tiny_bert("bitfit")),
         Case("the same tiny BERT with b_m2 alone", lambda: _tiny_bert("bitfit", ["b_m2"])),
         Case("the same tiny BERT frozen (head only)", lambda: _tiny_bert("frozen")),
         Case("notebook 9's toy vision transformer with only its head training", _toy_vit_head_only))),
    "08.lora_entries": CodingExercise(
        "lora_entries(hidden, layers, rank, adapted)", lora_entries,
        (Case("rank 8 on W_q and W_v of BERT-large (H = 1024, 24 layers)", lambda: (1024, 24, 8, 2)),
         Case("rank 16 on W_q, W_k, W_v and W_m1 of BERT-base (H = 768, 12 layers)", lambda: (768, 12, 16, 4)),
         Case("rank 1 on W_v of the classroom model (H = 384, 6 layers)", lambda: (384, 6, 1, 1)))),
}
