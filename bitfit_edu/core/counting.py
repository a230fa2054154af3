"""Counting: how much of a model trains. The package's counts are made here, from the one reading of what
trains (``methods.PreparedModel.trainable_entries``: a masked tensor counts its mask only), with one denominator.

**The denominator.** "% of the model" is always a share of the *pre-trained encoder as the run reads it*:
every parameter that came with the checkpoint and takes part in the forward pass, the new task head left
out (``share_of_model``). That is the paper's %param column: BERT-base's 0.09% is its 102,528 biases out
of its encoder's 108M parameters. A mean-pooling readout never reads the pooler, so the pooler is not part
of that encoder. The numerator is what a table says it counts: the encoder's trained entries, and the head
only where a column says "with head".

Counting from a config alone builds the model on PyTorch's ``meta`` device: every tensor has a shape and no
storage, so counting BERT-large takes no memory, no weights and no network. Counting what a method trains
prepares the real model as a run would (``methods.prepare``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, PretrainedConfig

from .. import paper
from ..data import locations
from ..errors import BitFitError
from . import adapters
from .biases import BIAS_GROUPS, BiasTerm, bias_census, head_parameters
from .methods import PreparedModel, parse_label, prepare, readable
from .readout import load_classifier

# Architecture hyperparameters of the paper's checkpoints, as published in their config.json on the
# Hugging Face hub (only what differs from transformers' defaults), so counting needs no download.
PAPER_CONFIGS: dict[str, dict] = {
    "bert-base-cased": dict(model_type="bert", vocab_size=28996),
    "bert-base-uncased": dict(model_type="bert", vocab_size=30522),
    "bert-large-cased": dict(model_type="bert", vocab_size=28996, hidden_size=1024,
                             num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096),
    "roberta-base": dict(model_type="roberta", vocab_size=50265, max_position_embeddings=514,
                         type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                         layer_norm_eps=1e-5),
}


def load_config(model: str | PretrainedConfig) -> PretrainedConfig:
    """A config for a paper model name (bundled), a hub name or path (cached or online), or itself."""
    if isinstance(model, PretrainedConfig):
        return model
    if model in PAPER_CONFIGS:
        kwargs = dict(PAPER_CONFIGS[model])
        return AutoConfig.for_model(kwargs.pop("model_type"), **kwargs)
    try:
        return AutoConfig.from_pretrained(model, **locations.hub_options())
    except (OSError, ValueError) as error:
        raise BitFitError(
            f"no config for model {model!r}: not one of the bundled paper models "
            f"({', '.join(PAPER_CONFIGS)}), and not loadable from the hub or a local path "
            f"(offline? put a hub cache holding it at $BITFIT_EDU_DATA/hf-hub). Cause: {error}"
        ) from error


@dataclass(frozen=True)
class Accounting:
    """Parameter counts of one model: the pre-trained encoder, its biases and a classification head."""

    model: str
    total: int
    biases: int
    per_group: dict[str, int]
    head: int

    @property
    def bias_percent(self) -> float:
        """Bias parameters as a percentage of the pre-trained model (``share_of_model``)."""
        return share_of_model(self.biases, self.total)

    @property
    def trainable_with_head(self) -> int:
        """What BitFit actually updates: the biases plus the new task head."""
        return self.biases + self.head

    @property
    def trainable_with_head_percent(self) -> float:
        return 100 * self.trainable_with_head / (self.total + self.head)


def share_of_model(trained: int, encoder: int) -> float:
    """``trained`` entries as a percentage of a pre-trained encoder of ``encoder`` parameters: the one
    denominator of every "% of the model" (see the module docstring)."""
    return 100 * trained / encoder


def meta_encoder(model: str | PretrainedConfig) -> torch.nn.Module:
    """The pre-trained encoder of ``model`` built on the ``meta`` device: every shape, no weights."""
    with torch.device("meta"):
        return AutoModel.from_config(load_config(model))


def count_parameters(model: str | PretrainedConfig, num_labels: int = 2) -> Accounting:
    """Count total, bias (per paper group) and head parameters of a model, from its config only."""
    config = copy.deepcopy(load_config(model))
    config.num_labels = num_labels
    encoder = meta_encoder(config)
    with torch.device("meta"):
        classifier = AutoModelForSequenceClassification.from_config(config)
    per_group = dict.fromkeys(BIAS_GROUPS, 0)
    for term in bias_census(encoder):
        per_group[term.group] += term.numel
    name = model if isinstance(model, str) else config.model_type
    return Accounting(
        model=name,
        total=sum(p.numel() for p in encoder.parameters()),
        biases=sum(per_group.values()),
        per_group=per_group,
        head=sum(p.numel() for p in head_parameters(classifier).values()),
    )


def truncate(value: float, decimals: int = 2) -> float:
    """Cut a number to ``decimals`` places, never rounding up (0.095 -> 0.09)."""
    scale = 10**decimals
    return math.floor(value * scale) / scale


def accounting_table(models: list[str | PretrainedConfig], num_labels: int = 2) -> pd.DataFrame:
    """The paper's %param column re-derived: exact counts, both roundings, and the paper's figure.

    ``round`` is ordinary rounding to two decimals, ``truncated`` cuts to two decimals. Comparing both
    with ``paper %`` shows which count and which rounding the paper's table used.
    """
    rows = []
    for model in models:
        acc = count_parameters(model, num_labels)
        rows.append({
            "model": acc.model,
            "total params": acc.total,
            "bias params": acc.biases,
            "bias %": round(acc.bias_percent, 4),
            "bias % (round)": round(acc.bias_percent, 2),
            "bias % (truncated)": truncate(acc.bias_percent),
            "paper %": paper.PARAM_PERCENT.get(acc.model),
            "head params": acc.head,
            "bias+head": acc.trainable_with_head,
            "bias+head %": round(acc.trainable_with_head_percent, 4),
        })
    return pd.DataFrame(rows).set_index("model")


_KIND_OF_GROUP = {**dict.fromkeys(("b_q", "b_k", "b_v", "b_m1"), "attention W_q, W_k, W_v, W_m1"),
                  **dict.fromkeys(("b_m2", "b_m3"), "FFN W_m2, W_m3"), "b_pooler": "pooler W",
                  **dict.fromkeys(("b_LN1", "b_LN2", "b_LN_emb"), "LayerNorm gains g")}


def parameter_kinds(model: nn.Module) -> dict[str, int]:
    """Parameter counts of a BERT-family encoder by kind: embeddings, attention and FFN matrices, pooler
    matrix, LayerNorm gains, bias terms and (if the model has one) the task head. Names go through the
    bias taxonomy, never by substring: a weight is of the kind its module's bias belongs to."""
    groups = {t.name: t.group for t in bias_census(model)}
    head = head_parameters(model)
    kinds = dict.fromkeys(("embeddings", *dict.fromkeys(_KIND_OF_GROUP.values()), "biases b"), 0)
    for name, p in model.named_parameters():
        if name in groups:
            kind = "biases b"
        elif name in head:
            kind = "task head"
        elif name.removesuffix(".weight") + ".bias" in groups:
            kind = _KIND_OF_GROUP[groups[name.removesuffix(".weight") + ".bias"]]
        elif ".embeddings." in f".{name}":
            kind = "embeddings"
        else:
            raise BitFitError(f"parameter {name!r} is neither an embedding nor a weight beside a known bias")
        kinds[kind] = kinds.get(kind, 0) + p.numel()
    return kinds


# What a trainable parameter is, by the last parts of its name
KINDS = ("existing biases", "new biases", "LoRA matrices", "IA3 scales", "other pre-trained weights", "head")


def parameter_kind(name: str, head: set[str]) -> str:
    """What a parameter is (one of ``KINDS``), from its full name; ``head`` holds the head's names."""
    if name in head:
        return "head"
    if ".lora_A." in name or ".lora_B." in name:
        return "LoRA matrices"
    if ".ia3_l." in name:
        return "IA3 scales"
    if ".beft_bias." in name:
        return "new biases"
    return "existing biases" if name.endswith(".bias") else "other pre-trained weights"


def trainable_kinds(prepared: PreparedModel) -> dict[str, int]:
    """How many trainable entries of each kind (``KINDS``) a prepared model holds (a masked tensor counts its
    mask only: ``PreparedModel.trainable_entries``)."""
    head = set(head_parameters(prepared.model))
    counts = dict.fromkeys(KINDS, 0)
    for name, count in prepared.trainable_entries().items():
        counts[parameter_kind(name, head)] += count
    return counts


PRETRAINED_KINDS = ("existing biases", "other pre-trained weights")


def pretrained_count(model: nn.Module) -> int:
    """The one denominator of "% of the model" for a model as a run holds it: every parameter that came with the
    checkpoint and that its readout reads (a mean readout has dropped the pooler), leaving out the new task head
    and whatever a peft method added (LoRA matrices, IA3 scales, new biases). The same for every method of one
    model and readout; each run records it (``Params.encoder``)."""
    head = set(head_parameters(model))
    return sum(p.numel() for name, p in model.named_parameters() if parameter_kind(name, head) in PRETRAINED_KINDS)


def peft_count(model: nn.Module, method: str, head: str = "classifier") -> int:
    """peft's own count of what ``method`` trains in ``model`` (which it changes), the head module ``head``
    trained beside it (peft's ``modules_to_save``): the check on ``trainable_kinds``."""
    import peft

    config = adapters.peft_config(method)
    config.modules_to_save = [head]
    trainable, _ = peft.PeftModel(model, config).get_nb_trainable_parameters()
    return trainable


def variant_parameters(model_name: str, readout: str, labels: Iterable[str],
                       num_labels: int = 2) -> pd.DataFrame:
    """What each method variant trains in the encoder (head excluded), counted on the real model as
    ``prepare`` leaves it (random masks drawn with seed 0), its share of the encoder, and the paper's
    %param column (BERT-base) beside it; rows by display name."""
    rows = []
    for label in labels:
        method, groups = parse_label(label)
        prepared = prepare(load_classifier(model_name, num_labels, readout, seed=0), method, groups or "all", seed=0)
        trained = prepared.trainable_count(include_head=False)
        rows.append({"variant": label, "trained entries (excl. head)": trained,
                     "% of encoder": share_of_model(trained, pretrained_count(prepared.model)),
                     "paper: %param (BERT-base)": paper.BERT_BASE_PARAM_PERCENT[label]})
    return readable(pd.DataFrame(rows).set_index("variant"))


def method_parameters(model_name: str, readout: str, labels: Iterable[str], num_labels: int = 2) -> pd.DataFrame:
    """What each method trains, by kind (``KINDS``: existing biases, new biases, LoRA matrices, IA3
    scales, head...), counted on the real model as ``prepare`` leaves it; for LoRA, IA3 and BEFT beside
    peft's own count of the same model's trainable parameters (``PeftModel.get_nb_trainable_parameters``,
    the head kept trainable as peft's ``modules_to_save``). Rows by display name; kinds no method trains
    are left out."""
    rows = []
    for label in labels:
        method, groups = parse_label(label)
        kinds = trainable_kinds(prepare(load_classifier(model_name, num_labels, readout, seed=0), method,
                                        groups or "all", seed=0))
        rows.append({"method": label, **kinds, "total": sum(kinds.values()),
                     "peft's count": peft_count(load_classifier(model_name, num_labels, readout), method)
                     if method in adapters.PEFT_METHODS else None})
    table = pd.DataFrame(rows).set_index("method")
    table = table.loc[:, (table != 0).any()].astype("Int64")
    return readable(table)


@dataclass(frozen=True)
class ModelShape:
    """A classifier's shape from its config: its bias terms, depth, encoder parameters and head (the lab's
    counts)."""

    name: str
    terms: tuple[BiasTerm, ...]
    depth: int
    encoder: int  # the pre-trained encoder as it is read: the denominator of its shares
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
        return cls(model_name.split("/")[-1], terms, encoder.config.num_hidden_layers, encoder_total, head)

    def trainable(self, groups: set[str], layers: tuple[int, int], head: bool) -> int:
        """Parameters that train: the chosen groups' bias terms in layers ``layers`` (first, last; terms
        outside the layers count when their group is chosen), and the head if ``head``."""
        first, last = layers
        chosen = sum(t.numel for t in self.terms
                     if t.group in groups and (t.layer is None or first <= t.layer <= last))
        return chosen + (self.head if head else 0)
