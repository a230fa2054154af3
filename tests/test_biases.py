import pytest
from conftest import tiny_bert_config
from transformers import (
    AutoModel,
    BertForSequenceClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    ElectraConfig,
    ElectraForSequenceClassification,
    GPT2Config,
    GPT2Model,
    LlamaConfig,
    LlamaModel,
    RobertaConfig,
    RobertaForSequenceClassification,
)

from bitfit_edu.core.biases import (
    BIAS_GROUPS,
    LAYER_GROUPS,
    VISION_GROUPS,
    bias_census,
    bias_parameters,
    census_table,
    classify_bias,
    head_parameters,
    resolve_groups,
)
from bitfit_edu.core.counting import parameter_kinds
from bitfit_edu.errors import BitFitError

SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=50,
             max_position_embeddings=64)


def models():
    yield "bert", AutoModel.from_config(tiny_bert_config()), True
    yield "roberta", RobertaForSequenceClassification(RobertaConfig(**SMALL)), False
    yield "electra", ElectraForSequenceClassification(ElectraConfig(embedding_size=32, **SMALL)), False
    distilbert = DistilBertConfig(vocab_size=50, dim=32, n_layers=2, n_heads=2, hidden_dim=64,
                                  max_position_embeddings=64)
    yield "distilbert", DistilBertForSequenceClassification(distilbert), False


@pytest.mark.parametrize("family,model,has_pooler", list(models()),
                         ids=lambda v: v if isinstance(v, str) else "")
def test_every_layer_has_the_papers_eight_biases(family, model, has_pooler):
    census = bias_census(model)
    for layer in (0, 1):
        groups = {t.group: t.numel for t in census if t.layer == layer}
        assert list(groups) == list(LAYER_GROUPS)
        assert groups["b_m2"] == 64 and all(n == 32 for g, n in groups.items() if g != "b_m2")
    outside = {t.group for t in census if t.layer is None}
    assert outside == ({"b_LN_emb", "b_pooler"} if has_pooler else {"b_LN_emb"})


def test_exact_names_do_not_confuse_b_m1_with_b_m3():
    # The substring "output.dense.bias" occurs in both; exact matching tells them apart.
    assert classify_bias("encoder.layer.0.attention.output.dense.bias", "bert") == ("b_m1", 0)
    assert classify_bias("encoder.layer.11.output.dense.bias", "bert") == ("b_m3", 11)
    assert classify_bias("encoder.layer.3.attention.output.LayerNorm.bias", "bert") == ("b_LN1", 3)
    assert classify_bias("encoder.layer.3.output.LayerNorm.bias", "bert") == ("b_LN2", 3)


def test_head_is_everything_outside_the_encoder():
    model = RobertaForSequenceClassification(RobertaConfig(**SMALL, num_labels=3))
    head = head_parameters(model)
    assert set(head) == {"classifier.dense.weight", "classifier.dense.bias",
                         "classifier.out_proj.weight", "classifier.out_proj.bias"}
    assert not any(t.name.startswith("classifier") for t in bias_census(model))


def test_census_table_totals_match_the_parameters():
    model = AutoModel.from_config(tiny_bert_config())
    table = census_table(model)
    biases = sum(p.numel() for n, p in model.named_parameters() if n.endswith(".bias"))
    assert table.loc["total", "total"] == biases
    assert table.loc["b_m2", 0] == 64 and table.loc["b_pooler", "outside"] == 32


def test_bias_parameters_selects_groups():
    model = AutoModel.from_config(tiny_bert_config())
    selected = bias_parameters(model, "b_q,b_m2")
    assert sorted(selected) == sorted(
        [f"encoder.layer.{layer}.attention.self.query.bias" for layer in (0, 1)]
        + [f"encoder.layer.{layer}.intermediate.dense.bias" for layer in (0, 1)])


def test_resolve_groups():
    assert resolve_groups("all") == BIAS_GROUPS
    assert resolve_groups(["b_m2", "b_q"]) == ("b_q", "b_m2")  # paper order
    with pytest.raises(BitFitError, match="unknown bias group 'b_x'.*b_q"):
        resolve_groups("b_q,b_x")


def test_model_without_bias_terms_is_a_clear_error():
    llama = LlamaModel(LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                   num_attention_heads=2, num_key_value_heads=2, vocab_size=50))
    with pytest.raises(BitFitError, match="no bias terms.*BERT-family"):
        bias_census(llama)


def test_unsupported_architecture_is_a_clear_error():
    gpt2 = GPT2Model(GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=50, n_positions=32))
    with pytest.raises(BitFitError, match="unknown model type.*gpt2.*bert, roberta, electra, distilbert"):
        bias_census(gpt2)


@pytest.mark.parametrize("model", [
    BertForSequenceClassification(tiny_bert_config()),
    DistilBertForSequenceClassification(DistilBertConfig(dim=32, n_layers=2, n_heads=2, hidden_dim=64,
                                                         vocab_size=50, max_position_embeddings=64)),
], ids=["bert", "distilbert"])
def test_parameter_kinds_sort_every_parameter_through_the_taxonomy(model):
    kinds = parameter_kinds(model)
    layers, hidden = 2, 32
    assert sum(kinds.values()) == sum(p.numel() for p in model.parameters())
    assert kinds["biases b"] == sum(t.numel for t in bias_census(model))
    assert kinds["LayerNorm gains g"] == (2 * layers + 1) * hidden  # two per layer and the embeddings' one
    assert kinds["attention W_q, W_k, W_v, W_m1"] == layers * 4 * hidden * hidden
    assert kinds["task head"] == sum(p.numel() for p in head_parameters(model).values())


def test_group_counts_add_up_per_group_and_head():
    from transformers import BertForSequenceClassification

    from bitfit_edu.core.biases import group_counts
    from bitfit_edu.core.methods import prepare

    model = BertForSequenceClassification(tiny_bert_config(num_labels=2))
    counts = group_counts(model, prepare(model, "bitfit", "b_q").trainable())
    assert list(counts.index) == [*(g for g in BIAS_GROUPS if g not in VISION_GROUPS), "head"]
    assert counts.loc["b_q"].tolist() == [2 * 32, 2 * 32] and counts.loc["b_m2", "trainable"] == 0
    assert counts.loc["head"].tolist() == [32 * 2 + 2, 32 * 2 + 2]
