"""What a network knows, and how much fine-tuning changed it: layer features, linear probes and linear CKA.

Two measurements answer the paper's key question, how much of fine-tuning *exposes* what pre-training
learned and how much *modifies* it (notebook 09):

- a **linear probe** fits a linear model (logistic regression for a classification task, ridge regression
  for STS-B) on one layer's frozen features: if it scores well, the task was already linearly readable
  there, before any fine-tuning;
- **linear CKA** (centred kernel alignment; Kornblith et al. 2019, "Similarity of Neural Network
  Representations Revisited") compares a layer's features on the same sentences before and after
  fine-tuning: 1 means the same representation up to a rotation and a scale, lower means changed.

A layer's feature of a sentence is the mean of its token vectors (padding masked out): the readout the
classroom model was trained with (``readout.mean_pool``).
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegressionCV, RidgeCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from ..core.biases import encoder_of
from ..core.readout import mean_pool


@torch.no_grad()
def layer_features(model: nn.Module, batches) -> list[np.ndarray]:
    """Mean-pooled features of the embeddings (index 0) and of each encoder layer (1..L) for every example
    of ``batches`` (dicts of input tensors): a list of (examples, hidden) arrays, in fp32."""
    encoder = encoder_of(model).eval()
    per_layer: list[list[np.ndarray]] = []
    for batch in batches:
        inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        hidden = encoder(**inputs, output_hidden_states=True).hidden_states
        per_layer = per_layer or [[] for _ in hidden]
        for parts, states in zip(per_layer, hidden, strict=True):
            parts.append(mean_pool(states.float(), inputs["attention_mask"]).numpy())
    return [np.concatenate(parts) for parts in per_layer]


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA of two feature matrices of the same examples (rows): ||Y'X||_F^2 / (||X'X||_F ||Y'Y||_F)
    after centring each feature. 1: the same up to an orthogonal map and a scale; near 0: unrelated."""
    x = x - x.mean(axis=0)
    y = y - y.mean(axis=0)
    cross = np.linalg.norm(y.T @ x) ** 2
    return float(cross / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)))


PROBE_STRENGTHS = (1e-2, 1e-1, 1.0, 10.0, 100.0)  # L2 strengths a probe chooses from, by cross-validation


def fit_probe(features: np.ndarray, labels: np.ndarray, regression: bool):
    """A linear probe on standardised features: ridge regression for a regression task, else logistic
    regression, its L2 strength chosen from ``PROBE_STRENGTHS`` by cross-validation on the training
    examples alone (the dev set only scores it)."""
    if regression:
        model = RidgeCV(alphas=[100 / c for c in PROBE_STRENGTHS])
    else:
        model = LogisticRegressionCV(Cs=list(PROBE_STRENGTHS), cv=3, max_iter=3000, l1_ratios=(0.0,),
                                     scoring="neg_log_loss", use_legacy_attributes=False)
    return make_pipeline(StandardScaler(), model).fit(features, labels)
