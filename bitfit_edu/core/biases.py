"""The bias taxonomy: every bias term of a BERT-family encoder, named as in the paper.

One encoder layer l computes (Ben-Zaken et al. 2022, Section 2)::

    Q(x) = W_q x + b_q      K(x) = W_k x + b_k      V(x) = W_v x + b_v
    h2 = Dropout(W_m1 h1 + b_m1)          h3 = g_LN1 * norm(h2 + x) + b_LN1
    h4 = GELU(W_m2 h3 + b_m2)             h5 = Dropout(W_m3 h4 + b_m3)
    out = g_LN2 * norm(h5 + h3) + b_LN2

so each layer holds eight bias vectors. Outside the layers sit the embeddings' LayerNorm bias
(``b_LN_emb``) and, in BERT and RoBERTa, the pooler's bias (``b_pooler``). Parameters are matched
by their exact name inside the encoder, never by substring: ``"output.dense.bias" in name`` would
also catch ``attention.output.dense.bias`` (b_m1 as well as b_m3), a bug of the original code.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn

from ..errors import BitFitError, unknown_choice

LAYER_GROUPS = ("b_q", "b_k", "b_v", "b_m1", "b_LN1", "b_m2", "b_m3", "b_LN2")
VISION_GROUPS = ("b_patch", "b_LN_final")  # a vision transformer's, outside its layers (see _VIT_LAYER)
BIAS_GROUPS = LAYER_GROUPS + ("b_LN_emb", "b_pooler") + VISION_GROUPS
HEAD = "head"

_BERT_LAYER = {
    "attention.self.query.bias": "b_q",
    "attention.self.key.bias": "b_k",
    "attention.self.value.bias": "b_v",
    "attention.output.dense.bias": "b_m1",
    "attention.output.LayerNorm.bias": "b_LN1",
    "intermediate.dense.bias": "b_m2",
    "output.dense.bias": "b_m3",
    "output.LayerNorm.bias": "b_LN2",
}
_DISTILBERT_LAYER = {
    "attention.q_lin.bias": "b_q",
    "attention.k_lin.bias": "b_k",
    "attention.v_lin.bias": "b_v",
    "attention.out_lin.bias": "b_m1",
    "sa_layer_norm.bias": "b_LN1",
    "ffn.lin1.bias": "b_m2",
    "ffn.lin2.bias": "b_m3",
    "output_layer_norm.bias": "b_LN2",
}
# A vision transformer (ViT, notebook 09) normalises *before* each block (pre-LN): ``layernorm_after``
# normalises h2 + x on its way into the MLP, where BERT's LN1 sits, and ``layernorm_before`` normalises the
# layer's input on its way into attention, which in BERT is the previous layer's LN2. ViT's image patches
# enter through a linear map with a bias (b_patch) and the last layer's output goes through one more
# LayerNorm (b_LN_final); BERT has neither.
_VIT_LAYER = {
    "attention.q_proj.bias": "b_q",
    "attention.k_proj.bias": "b_k",
    "attention.v_proj.bias": "b_v",
    "attention.o_proj.bias": "b_m1",
    "layernorm_after.bias": "b_LN1",
    "mlp.fc1.bias": "b_m2",
    "mlp.fc2.bias": "b_m3",
    "layernorm_before.bias": "b_LN2",
}
_OUTSIDE_LAYERS = {"embeddings.LayerNorm.bias": "b_LN_emb", "pooler.dense.bias": "b_pooler",
                   "embeddings.patch_embeddings.projection.bias": "b_patch", "layernorm.bias": "b_LN_final"}

# model_type -> (pattern of an encoder layer's prefix, that layer's bias names)
FAMILIES = {
    "bert": (r"encoder\.layer\.(\d+)\.", _BERT_LAYER),
    "roberta": (r"encoder\.layer\.(\d+)\.", _BERT_LAYER),
    "electra": (r"encoder\.layer\.(\d+)\.", _BERT_LAYER),
    "distilbert": (r"transformer\.layer\.(\d+)\.", _DISTILBERT_LAYER),
    "vit": (r"layers\.(\d+)\.", _VIT_LAYER),
}


@dataclass(frozen=True)
class BiasTerm:
    """One bias vector: its full parameter name, paper group, layer (None outside layers) and size."""

    name: str
    group: str
    layer: int | None
    numel: int


def encoder_of(model: nn.Module) -> nn.Module:
    """The pre-trained encoder inside a model with a task head (the model itself if it has none)."""
    return getattr(model, "base_model", model)


def head_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The task head: every parameter outside the pre-trained encoder."""
    encoder_ids = {id(p) for p in encoder_of(model).parameters()}
    return {n: p for n, p in model.named_parameters() if id(p) not in encoder_ids}


def _encoder_prefix(model: nn.Module) -> str:
    encoder = encoder_of(model)
    for name, module in model.named_modules():
        if module is encoder:
            return f"{name}." if name else ""
    raise BitFitError("the model's encoder is not one of its modules")


def classify_bias(relative_name: str, model_type: str) -> tuple[str, int | None]:
    """Paper group and layer of an encoder parameter name.

    >>> classify_bias("encoder.layer.3.intermediate.dense.bias", "bert")
    ('b_m2', 3)
    """
    layer_pattern, layer_biases = FAMILIES[model_type]
    match = re.fullmatch(layer_pattern + r"(.+)", relative_name)
    if match and match.group(2) in layer_biases:
        return layer_biases[match.group(2)], int(match.group(1))
    if relative_name in _OUTSIDE_LAYERS:
        return _OUTSIDE_LAYERS[relative_name], None
    if relative_name == "embeddings_project.bias":
        raise BitFitError(
            "this ELECTRA checkpoint's embeddings are narrower than its layers (as in ELECTRA-small), so a linear "
            "map widens them, and the paper names no bias for it: not supported. ELECTRA checkpoints whose "
            "embedding size equals the hidden size (ELECTRA-base, ELECTRA-large) are"
        )
    raise BitFitError(
        f"bias {relative_name!r} has no place in the paper's taxonomy for model type {model_type!r}"
    )


def bias_census(model: nn.Module) -> list[BiasTerm]:
    """Every bias term of the model's encoder, in parameter order, named in the paper's notation.

    Raises a :class:`BitFitError` for a model without bias terms (BitFit has nothing to train) and
    for an architecture outside the supported families.
    """
    prefix = _encoder_prefix(model)
    encoder_ids = {id(p) for p in encoder_of(model).parameters()}
    biases = [
        (name, p) for name, p in model.named_parameters()
        if id(p) in encoder_ids and name.endswith(".bias")
    ]
    model_type = getattr(getattr(model, "config", None), "model_type", type(model).__name__)
    if not biases:
        raise BitFitError(
            f"the {model_type!r} model has no bias terms in its encoder, so BitFit has nothing to "
            "train; use a BERT-family encoder (bert, roberta, distilbert, electra)"
        )
    if model_type not in FAMILIES:
        raise unknown_choice("model type (no bias taxonomy for it)", model_type, FAMILIES)
    terms = []
    for name, p in biases:
        # peft moves a wrapped layer's own parameters to '<layer>.base_layer' (adapters.inject)
        group, layer = classify_bias(name[len(prefix):].replace("base_layer.", ""), model_type)
        terms.append(BiasTerm(name, group, layer, p.numel()))
    return terms


def resolve_groups(groups: str | Iterable[str]) -> tuple[str, ...]:
    """Validate a selection of bias groups: 'all', one group, a comma list or an iterable of groups."""
    if isinstance(groups, str):
        groups = [g.strip() for g in groups.split(",") if g.strip()]
    groups = tuple(groups)
    if groups in ((), ("all",)):
        return BIAS_GROUPS
    if "all" in groups:
        raise BitFitError(f"bias groups {', '.join(groups)}: 'all' already means every group; give it alone")
    for group in groups:
        if group not in BIAS_GROUPS:
            raise unknown_choice("bias group", group, ("all",) + BIAS_GROUPS)
    return tuple(g for g in BIAS_GROUPS if g in groups)


def bias_parameters(model: nn.Module, groups: str | Iterable[str] = "all") -> dict[str, nn.Parameter]:
    """The bias parameters of the selected groups, by full parameter name."""
    selected = set(resolve_groups(groups))
    params = dict(model.named_parameters())
    return {t.name: params[t.name] for t in bias_census(model) if t.group in selected}


def census_table(model: nn.Module) -> pd.DataFrame:
    """Bias parameter counts as a table: one row per paper group, one column per layer, and totals."""
    rows = pd.DataFrame([(t.group, "outside" if t.layer is None else t.layer, t.numel)
                         for t in bias_census(model)], columns=["group", "layer", "numel"])
    table = rows.pivot_table(index="group", columns="layer", values="numel", aggfunc="sum", fill_value=0)
    table = table.reindex([g for g in BIAS_GROUPS if g in table.index])
    table["total"] = table.sum(axis=1)
    table.loc["total"] = table.sum(axis=0)
    return table.astype(int)


def snapshot_biases(model: nn.Module, census: Iterable[BiasTerm] | None = None) -> dict[str, torch.Tensor]:
    """A detached copy of every bias term, by full parameter name (for before/after comparisons);
    ``census``: the model's bias terms, if already taken."""
    params = dict(model.named_parameters())
    return {t.name: params[t.name].detach().float().cpu().clone() for t in (census or bias_census(model))}


def group_counts(model: nn.Module, trainable: Iterable[str]) -> pd.DataFrame:
    """Parameters per bias group (and the head) beside how many of them train: rows in the paper's
    order, columns 'parameters' and 'trainable'. ``trainable`` names the parameters that train."""
    trainable = set(trainable)
    rows: dict[str, dict[str, int]] = {}
    for term in bias_census(model):
        row = rows.setdefault(term.group, {"parameters": 0, "trainable": 0})
        row["parameters"] += term.numel
        row["trainable"] += term.numel if term.name in trainable else 0
    head = head_parameters(model)
    rows[HEAD] = {"parameters": sum(p.numel() for p in head.values()),
                  "trainable": sum(p.numel() for n, p in head.items() if n in trainable)}
    order = [group for group in (*BIAS_GROUPS, HEAD) if group in rows]
    return pd.DataFrame(rows).T.loc[order]
