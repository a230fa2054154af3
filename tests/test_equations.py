"""The paper's equations (bitfit_edu.core.equations) against Hugging Face's own BertLayer, numerically.

A small random BERT needs no weights and no network. Hugging Face initialises every bias to zero and
every LayerNorm gain to one, so the fixture draws them at random: a zero bias could not be told apart
from a dropped one.
"""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertModel

from bitfit_edu.core.biases import LAYER_GROUPS
from bitfit_edu.core.equations import BIAS_ENTERS, STEPS, LayerParams, additive_attention_mask, encoder_layer
from bitfit_edu.errors import BitFitError

TOLERANCE = 1e-5


def random_bert(attn_implementation: str = "eager") -> BertModel:
    config = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=128, max_position_embeddings=32,
                        attn_implementation=attn_implementation)
    torch.manual_seed(0)
    model = BertModel(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "LayerNorm" in name:
                p.normal_(mean=1.0 if name.endswith("LayerNorm.weight") else 0.0, std=0.2)
    return model


@pytest.fixture
def batch() -> dict[str, torch.Tensor]:
    """Two sequences; the second ends in three padding tokens."""
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(5, 50, (2, 9), generator=generator)
    attention_mask = torch.ones(2, 9, dtype=torch.long)
    attention_mask[1, -3:] = 0
    input_ids[1, -3:] = 0
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def layer_input(model: BertModel, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The first layer's input x (the embeddings) and the additive padding mask."""
    x = model.embeddings(input_ids=batch["input_ids"])
    return x, additive_attention_mask(batch["attention_mask"], x.dtype)


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
def test_encoder_layer_matches_hugging_face(batch, attn_implementation):
    model = random_bert(attn_implementation)
    config = model.config
    with torch.no_grad():
        x, mask = layer_input(model, batch)
        for layer in model.encoder.layer:
            expected = layer(x, attention_mask=mask)
            ours = encoder_layer(x, LayerParams.from_bert_layer(layer), config.num_attention_heads,
                                 mask, eps=config.layer_norm_eps)
            assert (ours - expected).abs().max().item() < TOLERANCE
            x = expected


def test_stack_of_layers_matches_the_whole_model(batch):
    model = random_bert()
    config = model.config
    with torch.no_grad():
        x, mask = layer_input(model, batch)
        for layer in model.encoder.layer:
            x = encoder_layer(x, LayerParams.from_bert_layer(layer), config.num_attention_heads,
                              mask, eps=config.layer_norm_eps)
        expected = model(**batch).last_hidden_state
    kept = batch["attention_mask"].bool()  # padding rows are never read downstream
    assert (x[kept] - expected[kept]).abs().max().item() < TOLERANCE


def test_dropping_b_m2_changes_the_output(batch):
    model = random_bert()
    with torch.no_grad():
        x, mask = layer_input(model, batch)
        params = LayerParams.from_bert_layer(model.encoder.layer[0])
        full = encoder_layer(x, params, model.config.num_attention_heads, mask)
        dropped = encoder_layer(x, params.without("b_m2"), model.config.num_attention_heads, mask)
    assert (full - dropped).abs().max().item() > 1e-2


@pytest.mark.parametrize("bias", list(BIAS_ENTERS))
def test_each_bias_enters_where_the_paper_says(batch, bias):
    """Zeroing a bias leaves every step before its equation unchanged and changes its own step.

    b_k is the exception the equations predict: it adds Q^m . b_k^m to every score of a query, the
    same for all keys, and softmax ignores a constant shift. So K changes but h1 and out do not.
    """
    model = random_bert()
    heads = model.config.num_attention_heads
    with torch.no_grad():
        x, mask = layer_input(model, batch)
        params = LayerParams.from_bert_layer(model.encoder.layer[0])
        full = encoder_layer(x, params, heads, mask, intermediates=True)
        dropped = encoder_layer(x, params.without(bias), heads, mask, intermediates=True)
    changed = {step: (full[step] - dropped[step]).abs().max().item() > TOLERANCE for step in STEPS}
    entry = STEPS.index(BIAS_ENTERS[bias])
    assert not any(changed[step] for step in STEPS[:entry])
    assert changed[BIAS_ENTERS[bias]]
    assert changed["out"] == (bias != "b_k")


def test_bias_names_are_the_census_groups():
    assert tuple(BIAS_ENTERS) == LAYER_GROUPS


def test_without_rejects_a_weight():
    params = LayerParams.from_bert_layer(random_bert().encoder.layer[0])
    with pytest.raises(BitFitError, match="not a bias term"):
        params.without("W_q")
