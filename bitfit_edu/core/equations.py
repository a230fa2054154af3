"""One BERT encoder layer written as the paper writes it (Ben-Zaken et al. 2022, Section 2).

For an input ``x`` (one row per token) and attention heads m = 1..M, layer l computes::

    Q^m(x) = W_q^m x + b_q^m     K^m(x) = W_k^m x + b_k^m     V^m(x) = W_v^m x + b_v^m
    h1  = att(Q^1, K^1, V^1, ..., Q^M, K^M, V^M)
    h2  = Dropout(W_m1 h1 + b_m1)
    h3  = g_LN1 * ((h2 + x) - mu) / sigma + b_LN1
    h4  = GELU(W_m2 h3 + b_m2)
    h5  = Dropout(W_m3 h4 + b_m3)
    out = g_LN2 * ((h5 + h3) - mu) / sigma + b_LN2

Every name below is the paper's. Dropout is the identity here (evaluation mode), so the functions
reproduce Hugging Face's ``BertLayer`` in ``eval()`` mode to float rounding. The eight bias vectors
b_q, b_k, b_v, b_m1, b_LN1, b_m2, b_m3, b_LN2 are what BitFit trains; ``BIAS_ENTERS`` says in which
equation each one enters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from ..errors import BitFitError

# The first quantity of the layer that each bias term changes.
BIAS_ENTERS = {
    "b_q": "Q", "b_k": "K", "b_v": "V", "b_m1": "h2",
    "b_LN1": "h3", "b_m2": "h4", "b_m3": "h5", "b_LN2": "out",
}
# Every quantity the layer computes, in the order it computes them.
STEPS = ("Q", "K", "V", "h1", "h2", "h3", "h4", "h5", "out")


@dataclass(frozen=True)
class LayerParams:
    """The parameters of one encoder layer, in the paper's notation.

    Weights are stored as ``torch.nn.Linear`` stores them, shape (out, in), so ``W x`` is ``x @ W.T``.
    The gains ``g_LN1`` and ``g_LN2`` are weights, not biases: BitFit keeps them frozen.
    """

    W_q: Tensor
    b_q: Tensor
    W_k: Tensor
    b_k: Tensor
    W_v: Tensor
    b_v: Tensor
    W_m1: Tensor
    b_m1: Tensor
    g_LN1: Tensor
    b_LN1: Tensor
    W_m2: Tensor
    b_m2: Tensor
    W_m3: Tensor
    b_m3: Tensor
    g_LN2: Tensor
    b_LN2: Tensor

    @classmethod
    def from_bert_layer(cls, layer: nn.Module) -> LayerParams:
        """Read the parameters of a Hugging Face ``BertLayer`` (``model.encoder.layer[l]``), detached."""
        attention, ffn_in, ffn_out = layer.attention, layer.intermediate.dense, layer.output
        modules = {
            "q": attention.self.query, "k": attention.self.key, "v": attention.self.value,
            "m1": attention.output.dense, "LN1": attention.output.LayerNorm,
            "m2": ffn_in, "m3": ffn_out.dense, "LN2": ffn_out.LayerNorm,
        }
        values = {}
        for key, module in modules.items():
            values[f"g_{key}" if key.startswith("LN") else f"W_{key}"] = module.weight.detach()
            values[f"b_{key}"] = module.bias.detach()
        return cls(**values)

    def without(self, bias: str) -> LayerParams:
        """A copy with one bias term set to zero (to see what that bias does)."""
        if bias not in BIAS_ENTERS:
            raise BitFitError(f"{bias!r} is not a bias term; choose one of {', '.join(BIAS_ENTERS)}")
        return replace(self, **{bias: torch.zeros_like(getattr(self, bias))})


def affine(x: Tensor, W: Tensor, b: Tensor) -> Tensor:
    """W x + b, for every token (row) of x."""
    return x @ W.T + b


def Q(x: Tensor, p: LayerParams) -> Tensor:
    """Q(x) = W_q x + b_q: the queries of all heads side by side (head m owns H / M of the columns)."""
    return affine(x, p.W_q, p.b_q)


def K(x: Tensor, p: LayerParams) -> Tensor:
    """K(x) = W_k x + b_k: the keys of all heads."""
    return affine(x, p.W_k, p.b_k)


def V(x: Tensor, p: LayerParams) -> Tensor:
    """V(x) = W_v x + b_v: the values of all heads."""
    return affine(x, p.W_v, p.b_v)


def split_heads(t: Tensor, num_heads: int) -> Tensor:
    """(batch, tokens, H) -> (batch, heads, tokens, H / heads): head m's slice of Q, K or V."""
    batch, tokens, hidden = t.shape
    return t.view(batch, tokens, num_heads, hidden // num_heads).transpose(1, 2)


def merge_heads(t: Tensor) -> Tensor:
    """(batch, heads, tokens, d) -> (batch, tokens, heads * d): the heads' outputs concatenated."""
    batch, heads, tokens, d = t.shape
    return t.transpose(1, 2).reshape(batch, tokens, heads * d)


def additive_attention_mask(mask: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """A tokenizer's 0/1 ``attention_mask`` (batch, tokens) as the additive mask att adds to its scores.

    Kept tokens get 0, padding gets the most negative float, so softmax gives padding zero weight.
    Shape (batch, 1, 1, tokens): the same for every head and every query, as ``BertLayer`` expects.
    """
    return (1.0 - mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


def att(Q: Tensor, K: Tensor, V: Tensor, num_heads: int, attention_mask: Tensor | None = None) -> Tensor:
    """h1 = att(Q^1, K^1, V^1, ..., Q^M, K^M, V^M): multi-head scaled dot-product attention.

    Each head computes softmax(Q^m K^m^T / sqrt(d) + mask) V^m with d = H / M; the heads' outputs are
    concatenated. ``attention_mask`` is additive (see :func:`additive_attention_mask`).
    """
    q, k, v = (split_heads(t, num_heads) for t in (Q, K, V))
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if attention_mask is not None:
        scores = scores + attention_mask
    return merge_heads(torch.softmax(scores, dim=-1) @ v)


def layer_norm(z: Tensor, g: Tensor, b: Tensor, eps: float) -> Tensor:
    """g * (z - mu) / sigma + b over the hidden dimension, sigma = sqrt(var + eps) (biased variance)."""
    mu = z.mean(-1, keepdim=True)
    sigma = torch.sqrt(z.var(-1, unbiased=False, keepdim=True) + eps)
    return g * (z - mu) / sigma + b


def gelu(z: Tensor) -> Tensor:
    """GELU(z) = z * Phi(z) = z/2 * (1 + erf(z / sqrt 2)): BERT's exact GELU, not the tanh approximation."""
    return 0.5 * z * (1.0 + torch.erf(z / math.sqrt(2.0)))


def h2(h1: Tensor, p: LayerParams) -> Tensor:
    """h2 = Dropout(W_m1 h1 + b_m1); Dropout is the identity in evaluation mode."""
    return affine(h1, p.W_m1, p.b_m1)


def h3(h2: Tensor, x: Tensor, p: LayerParams, eps: float) -> Tensor:
    """h3 = g_LN1 * ((h2 + x) - mu) / sigma + b_LN1: residual connection, then LayerNorm."""
    return layer_norm(h2 + x, p.g_LN1, p.b_LN1, eps)


def h4(h3: Tensor, p: LayerParams) -> Tensor:
    """h4 = GELU(W_m2 h3 + b_m2): the feed-forward block's wide (4H) hidden layer."""
    return gelu(affine(h3, p.W_m2, p.b_m2))


def h5(h4: Tensor, p: LayerParams) -> Tensor:
    """h5 = Dropout(W_m3 h4 + b_m3): back from 4H to H."""
    return affine(h4, p.W_m3, p.b_m3)


def out(h5: Tensor, h3: Tensor, p: LayerParams, eps: float) -> Tensor:
    """out = g_LN2 * ((h5 + h3) - mu) / sigma + b_LN2: residual connection, then LayerNorm."""
    return layer_norm(h5 + h3, p.g_LN2, p.b_LN2, eps)


def encoder_layer(x: Tensor, params: LayerParams, num_heads: int, attention_mask: Tensor | None = None,
                  eps: float = 1e-12, intermediates: bool = False) -> Tensor | dict[str, Tensor]:
    """One encoder layer, equation by equation: ``out``, or with ``intermediates`` a dict of every step.

    ``x`` is (batch, tokens, H); ``attention_mask`` is additive (see :func:`additive_attention_mask`);
    ``eps`` is the LayerNorm epsilon (``config.layer_norm_eps``: 1e-12 for BERT). The dict holds
    Q, K, V, h1, h2, h3, h4, h5 and out (``STEPS``), to show where each bias enters.
    """
    s = {"Q": Q(x, params), "K": K(x, params), "V": V(x, params)}
    s["h1"] = att(s["Q"], s["K"], s["V"], num_heads, attention_mask)
    s["h2"] = h2(s["h1"], params)
    s["h3"] = h3(s["h2"], x, params, eps)
    s["h4"] = h4(s["h3"], params)
    s["h5"] = h5(s["h4"], params)
    s["out"] = out(s["h5"], s["h3"], params, eps)
    return s if intermediates else s["out"]
