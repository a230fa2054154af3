"""How a classifier reads a sentence vector out of the encoder: [CLS] through the pooler, or mean pooling.

BERT and RoBERTa were pre-trained with a pooler (``tanh(W_p h_[CLS] + b_p)``), and the standard Hugging
Face head reads through it. A sentence-transformers checkpoint was trained to be read by *mean pooling*
and ships a pooler it never trained (``all-MiniLM-L6-v2``: pooler bias all zeros, weights at their
initial scale). BitFit freezes W_p, so that untrained map sits frozen on the readout path. Use the
readout the checkpoint was trained with; every run records which one it used.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedTokenizerBase,
    set_seed,
)
from transformers.modeling_outputs import SequenceClassifierOutput

from ..data import locations
from ..errors import BitFitError, unknown_choice
from .starts import PRETRAINED, check_start, shuffle_weight_matrices

READOUTS = {
    "cls_pooler": "[CLS] through the pre-trained pooler, then a linear classifier (Hugging Face's standard head)",
    "mean": "mean of the token vectors (padding masked out), then a linear classifier (sentence-transformers)",
}


def default_readout(model_name: str) -> str:
    """Mean pooling for sentence-transformers checkpoints, [CLS]+pooler otherwise."""
    return "mean" if model_name.startswith("sentence-transformers/") else "cls_pooler"


class MeanPoolingClassifier(nn.Module):
    """A pre-trained encoder read by mean pooling: logits = W_c mean_t(h_t) + b_c.

    The encoder is stored under its ``base_model_prefix`` ('bert', 'roberta', ...), so parameter names
    match those of Hugging Face's own ``*ForSequenceClassification`` models.
    """

    def __init__(self, encoder: nn.Module, num_labels: int):
        super().__init__()
        self.config = encoder.config
        self.num_labels = num_labels
        self.prefix = encoder.base_model_prefix
        setattr(self, self.prefix, encoder)
        self.dropout = nn.Dropout(getattr(self.config, "hidden_dropout_prob", 0.1))
        self.classifier = nn.Linear(self.config.hidden_size, num_labels)
        nn.init.normal_(self.classifier.weight, std=getattr(self.config, "initializer_range", 0.02))
        nn.init.zeros_(self.classifier.bias)

    @property
    def base_model(self) -> nn.Module:
        return getattr(self, self.prefix)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None,
                labels: torch.Tensor | None = None) -> SequenceClassifierOutput:
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        hidden = self.base_model(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state
        logits = self.classifier(self.dropout(mean_pool(hidden, attention_mask)))
        loss = None
        if labels is not None:
            if self.num_labels == 1:
                loss = nn.functional.mse_loss(logits.squeeze(-1), labels.to(logits.dtype))
            else:
                loss = nn.functional.cross_entropy(logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """mean_t(h_t) over each row's real tokens (padding masked out): (batch, tokens, H) -> (batch, H)."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)


def _cannot_load(model_name: str, error: Exception) -> BitFitError:
    return BitFitError(
        f"could not load model {model_name!r} from the Hugging Face hub or a local folder: {error}. "
        f"Offline? Models are read from {locations.hub_cache() or 'the default hub cache'}; put a hub cache "
        "holding it at $BITFIT_EDU_DATA/hf-hub, or set HF_HUB_CACHE (an absolute path) and HF_HUB_OFFLINE=1"
    )


def load_tokenizer(model_name: str) -> PreTrainedTokenizerBase:
    """The checkpoint's tokenizer, or one clear error saying how to make it loadable."""
    try:
        return AutoTokenizer.from_pretrained(model_name, **locations.hub_options())
    except OSError as error:
        raise _cannot_load(model_name, error) from None


def load_encoder(model_name: str, start: str = PRETRAINED, seed: int = 0) -> nn.Module:
    """The encoder alone (no head), from where ``start`` says (``starts``), or one clear error saying how
    to make it loadable."""
    try:
        if start == "random":
            set_seed(seed)
            return AutoModel.from_config(AutoConfig.from_pretrained(model_name, **locations.hub_options()))
        encoder = AutoModel.from_pretrained(model_name, **locations.model_options())
    except OSError as error:
        raise _cannot_load(model_name, error) from None
    if start == "shuffled":
        shuffle_weight_matrices(encoder, seed)
    return encoder


def load_classifier(model_name: str, num_labels: int, readout: str, seed: int = 0,
                    start: str = PRETRAINED) -> nn.Module:
    """An encoder with a new classification head (seeded), read out as ``readout`` says; the encoder
    starts from the pre-trained weights, or as ``start`` says (``starts``: 'random', 'shuffled').

    ``num_labels=1`` makes a regression head (mean squared error), as for STS-B.
    """
    if readout not in READOUTS:
        raise unknown_choice("readout", readout, READOUTS)
    check_start(start)
    set_seed(seed)
    try:
        if readout == "cls_pooler" and start == PRETRAINED:
            # a checkpoint that already carries a head of another size gets a new one
            return AutoModelForSequenceClassification.from_pretrained(model_name, num_labels=num_labels,
                                                                      ignore_mismatched_sizes=True,
                                                                      **locations.model_options())
        if readout == "cls_pooler":
            config = AutoConfig.from_pretrained(model_name, num_labels=num_labels, **locations.hub_options())
            model = AutoModelForSequenceClassification.from_config(config)  # random everywhere
            if start == "shuffled":
                pretrained = AutoModel.from_pretrained(model_name, **locations.model_options())
                shuffle_weight_matrices(pretrained, seed)
                model.base_model.load_state_dict(pretrained.state_dict())
            return model
        encoder = load_encoder(model_name, start, seed)
    except OSError as error:
        raise _cannot_load(model_name, error) from None
    if getattr(encoder, "pooler", None) is not None:
        encoder.pooler = None  # mean pooling never reads it: it must not count as trainable
    return MeanPoolingClassifier(encoder, num_labels)
