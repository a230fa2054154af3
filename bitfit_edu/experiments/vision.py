"""Beyond language: BitFit on a toy vision transformer, pre-trained here on half of a small image dataset.

The paper's future work asks whether BitFit carries over to other domains. No public vision checkpoint fits
a CPU lab and this project's offline data, so we make a toy one (notebook 09):

1. **Data**: scikit-learn's bundled handwritten digits, 1,797 images of 8x8 pixels. The digits 0-4 are
   the *pre-training* data; the digits 5-9 are the *downstream task*, split once (seed 0) into
   ``TASK_TRAIN`` training images and the rest for testing.
2. **Pre-training**: a small ViT (``transformers.ViTForImageClassification``: 2x2-pixel patches, so 16
   patches and a [CLS] token; ``VIT``'s sizes) learns to tell 0-4 apart, once, from seed 0.
3. **Fine-tuning** on 5-9, ``SEEDS``: Full-FT, BitFit (the biases and a new head) and Frozen (the head
   alone) from the pre-trained ViT, and the same three from a random ViT of the same configuration (Full-FT
   from random is "training from scratch"). Frozen from random was added after the first results, to see
   what a random ViT's features give a trained head alone (BitFit from random had stayed at chance): it is
   exploratory, not part of the declared claim (``evidence.expose.VISION_CLAIMS``).

It is a toy, pre-trained in the project, not a public checkpoint: it can say whether BitFit's behaviour
(close to Full-FT from a pre-trained start, far from it without one) appears in another domain and another
architecture (pre-LN, patches). It cannot speak to the paper's numbers, to large vision models, or to
pre-training at scale. The training loop is written out (``train``), as notebook 09 shows it.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from transformers import ViTConfig, ViTForImageClassification

from ..core import precision
from ..core.methods import prepare
from ..data.locations import results_folder

PRETRAIN_CLASSES, TASK_CLASSES = (0, 1, 2, 3, 4), (5, 6, 7, 8, 9)
TASK_TRAIN = 250  # downstream training images (the rest test); few, as where BitFit did best in notebook 05
SEEDS = (0, 1, 2, 3, 4)
VIT = dict(image_size=8, patch_size=2, num_channels=1, hidden_size=64, num_hidden_layers=4, num_attention_heads=4,
           intermediate_size=128, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


@dataclass(frozen=True)
class Recipe:
    """How long and how fast each phase trains (AdamW, constant rate, batch 32, as the paper's recipe)."""

    pretrain_epochs: int = 40
    pretrain_rate: float = 1e-3
    epochs: int = 40
    full_rate: float = 1e-3
    bias_rate: float = 1e-2  # BitFit and Frozen: 10x Full-FT's, as for text (notebook 03)
    batch_size: int = 32


def demo_recipe(profile_name: str) -> Recipe:
    """The recipe of notebook 09's live demo: the committed one, or a few epochs in the smoke profile (CI)."""
    return Recipe(pretrain_epochs=3, epochs=3) if profile_name == "smoke" else Recipe()


# (method, start) of each fine-tuning run, in the order notebook 09 shows them
VARIANTS = (("full", "pretrained"), ("bitfit", "pretrained"), ("frozen", "pretrained"),
            ("full", "random"), ("bitfit", "random"), ("frozen", "random"))


def digits(classes: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """The digits of ``classes`` as (images, labels): images (n, 1, 8, 8) scaled to [-1, 1], labels 0..k-1."""
    data = load_digits()
    keep = np.isin(data.target, classes)
    images = torch.tensor(data.images[keep] / 8.0 - 1.0, dtype=torch.float32).unsqueeze(1)
    labels = torch.tensor([classes.index(t) for t in data.target[keep]])
    return images, labels


def task_split(seed: int = 0):
    """The downstream task (digits 5-9): ``TASK_TRAIN`` training images and the rest for testing."""
    images, labels = digits(TASK_CLASSES)
    train_x, test_x, train_y, test_y = train_test_split(images, labels, train_size=TASK_TRAIN,
                                                        stratify=labels, random_state=seed)
    return (train_x, train_y), (test_x, test_y)


def new_vit(num_labels: int, seed: int) -> ViTForImageClassification:
    """A randomly initialised toy ViT (``VIT``), drawn by ``seed``."""
    torch.manual_seed(seed)
    return ViTForImageClassification(ViTConfig(**VIT, num_labels=num_labels))


def train(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, epochs: int, rate: float,
          batch_size: int, seed: int) -> list[float]:
    """The fine-tuning loop, written out: shuffle, forward, loss, backward, clip, step. Only the parameters
    with ``requires_grad`` train. Returns the mean training loss of each epoch."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=rate, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    losses = []
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=generator)
        total = 0.0
        for first in range(0, len(images), batch_size):
            batch = order[first:first + batch_size]
            loss = nn.functional.cross_entropy(model(pixel_values=images[batch]).logits, labels[batch])
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            total += loss.item() * len(batch)
        losses.append(total / len(images))
    return losses


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of ``images`` classified right, x100."""
    model.eval()
    return 100 * float((model(pixel_values=images).logits.argmax(-1) == labels).float().mean())


def pretrain(recipe: Recipe) -> tuple[ViTForImageClassification, dict]:
    """The toy ViT pre-trained on digits 0-4 (seed 0), with its accuracy on held-out images of 0-4."""
    images, labels = digits(PRETRAIN_CLASSES)
    train_x, test_x, train_y, test_y = train_test_split(images, labels, test_size=0.2, stratify=labels,
                                                        random_state=0)
    model = new_vit(len(PRETRAIN_CLASSES), seed=0)
    losses = train(model, train_x, train_y, recipe.pretrain_epochs, recipe.pretrain_rate, recipe.batch_size, seed=0)
    return model, {"train_images": len(train_x), "test_images": len(test_x),
                   "test_accuracy": accuracy(model, test_x, test_y), "last_loss": losses[-1]}


def with_new_head(backbone: ViTForImageClassification, num_labels: int, seed: int) -> ViTForImageClassification:
    """A copy of ``backbone``'s encoder under a new classification head drawn by ``seed``."""
    model = new_vit(num_labels, seed)
    model.vit.load_state_dict(backbone.vit.state_dict())
    return model


def fine_tune(backbone: ViTForImageClassification, method: str, start: str, seed: int, recipe: Recipe) -> dict:
    """One fine-tuning run on digits 5-9: its test accuracy, what it trained, and its loss curve."""
    (train_x, train_y), (test_x, test_y) = task_split()
    classes = len(TASK_CLASSES)
    model = with_new_head(backbone, classes, seed) if start == "pretrained" else new_vit(classes, seed)
    prepared = prepare(model, method)
    rate = recipe.full_rate if method == "full" else recipe.bias_rate
    started = time.perf_counter()
    losses = train(model, train_x, train_y, recipe.epochs, rate, recipe.batch_size, seed)
    return {"method": method, "start": start, "seed": seed, "test_accuracy": accuracy(model, test_x, test_y),
            "train_accuracy": accuracy(model, train_x, train_y), "trainable": prepared.trainable_count(),
            "trainable_without_head": prepared.trainable_count(include_head=False),
            "total": prepared.total_count(), "losses": losses, "seconds": time.perf_counter() - started}


def run_all(recipe: Recipe = Recipe(), seeds: tuple[int, ...] = SEEDS) -> dict:
    """Pre-train once, then every variant and seed: everything notebook 09 reads about the toy."""
    torch.set_num_threads(1)
    started = time.perf_counter()
    backbone, pretraining = pretrain(recipe)
    runs = [fine_tune(backbone, method, start, seed, recipe) for seed in seeds for method, start in VARIANTS]
    return {"schema": "bitfit_edu.vision/1", "vit": VIT, "recipe": asdict(recipe), "task_train": TASK_TRAIN,
            "pretraining": pretraining, "runs": runs, "seconds": time.perf_counter() - started,
            "device": precision.hardware_name(), "torch": torch.__version__}


def results_file() -> Path:
    return results_folder("expose", "vision.json")


def load(path: Path | None = None) -> dict:
    """The committed toy's results (``run_all``)."""
    return json.loads(Path(path or results_file()).read_text(encoding="utf-8"))
