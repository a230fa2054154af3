"""Parameter accounting: how many parameters BitFit trains, reproduced from model configs alone.

Models are built on PyTorch's ``meta`` device: every tensor has a shape and no storage, so counting
the parameters of BERT-large takes no memory, no weights and no network.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import pandas as pd
import torch
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, PretrainedConfig

from . import locations, paper
from .biases import BIAS_GROUPS, bias_census, head_parameters
from .errors import BitFitError

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
        """Bias parameters as a percentage of the pre-trained model."""
        return 100 * self.biases / self.total

    @property
    def trainable_with_head(self) -> int:
        """What BitFit actually updates: the biases plus the new task head."""
        return self.biases + self.head

    @property
    def trainable_with_head_percent(self) -> float:
        return 100 * self.trainable_with_head / (self.total + self.head)


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
