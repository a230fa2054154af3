"""Where a run's encoder starts: the pre-trained weights, a random network, or the pre-trained weights shuffled.

The paper's explanation of BitFit is that fine-tuning *exposes* what pre-training put into the network.
If that is so, BitFit needs the pre-trained weights: take them away and only the biases are left to learn
with. Two ways to take them away (notebook 09):

- **random**: a network of the same configuration, initialised as Hugging Face initialises a new model
  (weights ~ N(0, 0.02), biases 0, LayerNorm 1 and 0), drawn by the run's seed;
- **shuffled**: the pre-trained network with the entries of every weight matrix (each parameter with two
  or more dimensions, the embeddings included) permuted at random, drawn by the run's seed. Each matrix
  keeps its values, so its scale and its distribution, but loses the structure that pre-training gave
  it. Biases and LayerNorm parameters keep their pre-trained values.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import unknown_choice

PRETRAINED = "pretrained"
STARTS = {
    PRETRAINED: "the pre-trained weights",
    "random": "a randomly initialised network of the same configuration",
    "shuffled": "the pre-trained weights with each weight matrix's entries shuffled",
}
DISPLAY_NAMES = {PRETRAINED: "pre-trained", "random": "random", "shuffled": "shuffled"}


def check_start(start: str) -> str:
    """``start`` if it is one of ``STARTS``, else one clear error listing them."""
    if start not in STARTS:
        raise unknown_choice("start", start, STARTS)
    return start


def shuffle_weight_matrices(encoder: nn.Module, seed: int) -> list[str]:
    """Permute the entries of every weight matrix of ``encoder`` in place (seeded); returns their names."""
    generator = torch.Generator().manual_seed(seed)
    shuffled = []
    with torch.no_grad():
        for name, weight in encoder.named_parameters():
            if weight.dim() >= 2:
                order = torch.randperm(weight.numel(), generator=generator)
                weight.copy_(weight.flatten()[order].view_as(weight))
                shuffled.append(name)
    return shuffled
