"""Today's parameter-efficient methods on the same harness as BitFit, through ``peft``: LoRA, IA3, BEFT.

Each adds new parameters beside frozen pre-trained weights, where BitFit trains a subset of the existing ones:

* **LoRA** (Hu et al. 2022): ``W x + b`` becomes ``W x + b + (alpha / r) B A x`` with A (r x d_in) and
  B (d_out x r), B starting at zero. The LoRA paper's GLUE setting puts it on W_q and W_v.
* **IA3** (Liu et al. 2022): learned scales, ``l_k * (W_k x + b_k)``, ``l_v * (W_v x + b_v)`` and
  ``W_m3 (l_ff * h4)``, each starting at one (peft's default targets for BERT).
* **BEFT**: a new bias beside each targeted linear layer, ``W x + b + b_new``, ``b_new`` starting at zero.
  peft's default targets the value projections only. Unlike BitFit it adds biases instead of training the
  existing ones; since the layer sees only ``b + b_new``, that trains exactly as BitFit on the same biases
  would (without weight decay), but it cannot reach the LayerNorm biases (``b_LN1``, ``b_LN2``).

``inject`` puts a method's modules into a model in place (``peft.inject_adapter_in_model``), so the model keeps
its class and its parameter names (a wrapped layer's own weights move to ``<layer>.base_layer``).
"""

from __future__ import annotations

from torch import nn

from ..errors import unknown_choice

PEFT_METHODS = {
    "lora_r8": "LoRA, rank 8 on W_q and W_v (the LoRA paper's GLUE setting), and the head",
    "lora_r3": "LoRA, rank 3 on W_q and W_v: the rank closest to BitFit's parameter count, and the head",
    "ia3": "IA3: learned scales of keys, values and the feed-forward input (peft's BERT default), and the head",
    "beft": "BEFT: new zero-initialised biases beside W_v (peft's default), and the head",
    "beft_all": "BEFT on every linear layer of the encoder, and the head",
}
LORA_RANKS = {"lora_r8": 8, "lora_r3": 3}  # on W_q and W_v, with alpha = r (the update's scale alpha / r is 1)
# the encoder's linear layers by the end of their module names: W_q, W_k, W_v, and W_m1, W_m2, W_m3 ('dense')
EVERY_LINEAR = ["query", "key", "value", "dense"]



def peft_config(method: str):
    """The peft configuration of a method (see ``PEFT_METHODS``); peft loads only when a run needs it."""
    import peft

    if method in LORA_RANKS:
        rank = LORA_RANKS[method]
        return peft.LoraConfig(r=rank, lora_alpha=rank, lora_dropout=0.0, target_modules=["query", "value"])
    if method == "ia3":
        return peft.IA3Config()
    if method == "beft":
        return peft.BeftConfig()
    if method == "beft_all":
        return peft.BeftConfig(target_modules=EVERY_LINEAR)
    raise unknown_choice("peft method", method, PEFT_METHODS)


def inject(model: nn.Module, method: str) -> nn.Module:
    """Put ``method``'s new modules into ``model`` in place; every other parameter is frozen by peft."""
    import peft

    return peft.inject_adapter_in_model(peft_config(method), model)


