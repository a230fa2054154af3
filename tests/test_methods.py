"""Each method trains exactly what it says, and nothing else moves: checked bit for bit."""

import pytest
import torch
from conftest import tiny_bert_config
from transformers import BertForSequenceClassification

from bitfit_edu.core.biases import bias_census, head_parameters
from bitfit_edu.core.methods import METHODS, display_name, optimizer_groups, prepare
from bitfit_edu.errors import BitFitError


def tiny_classifier(seed: int = 0) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    return BertForSequenceClassification(tiny_bert_config())


def train_steps(prepared, steps: int = 5) -> None:
    """AdamW steps with clipping, as in the training recipe, on random token batches."""
    optimizer = torch.optim.AdamW(optimizer_groups(prepared, weight_decay=0.1), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        input_ids = torch.randint(5, 25, (4, 7), generator=generator)
        labels = torch.randint(0, 2, (4,), generator=generator)
        loss = prepared.model(input_ids=input_ids, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(prepared.model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()


@pytest.mark.parametrize("method", list(METHODS))
def test_untouched_entries_stay_bitwise_unchanged(method):
    model = tiny_classifier()
    prepared = prepare(model, method, seed=1)  # LoRA, IA3 and BEFT add parameters: compare from here
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    train_steps(prepared)
    trainable = prepared.trainable()
    # b_k's gradient is zero in exact arithmetic (softmax ignores a shift shared by all keys), so
    # whether it moves depends on float rounding: it is not required to change. Nor is a new bias beside W_k.
    b_k = {t.name for t in bias_census(model) if t.group == "b_k"}
    b_k |= {name for name in before if ".key.beft_bias." in name}
    for name, p in model.named_parameters():
        changed = p.detach() != before[name]
        if name not in trainable:
            assert not changed.any(), f"{method}: frozen {name} changed"
        elif name in prepared.masks:
            assert not changed[~prepared.masks[name]].any(), f"{method}: an untouched entry of {name} changed"
            assert changed[prepared.masks[name]].any(), f"{method}: no selected entry of {name} trained"
        elif name not in b_k:
            assert changed.any(), f"{method}: trainable {name} never changed"


def test_bitfit_trains_the_biases_and_the_head_only():
    model = tiny_classifier()
    prepared = prepare(model, "bitfit")
    expected = {t.name for t in bias_census(model)} | set(head_parameters(model))
    assert set(prepared.trainable()) == expected


def test_bitfit_subset_and_frozen_counts():
    model = tiny_classifier()
    b_q_b_m2 = prepare(model, "bitfit", groups=["b_q", "b_m2"]).trainable_count(include_head=False)
    assert b_q_b_m2 == 2 * (32 + 64)
    assert prepare(model, "frozen").trainable_count(include_head=False) == 0
    assert prepare(model, "frozen").trainable_count() == 32 * 2 + 2


@pytest.mark.parametrize("method", ["rand_uniform", "rand_row_col"])
def test_random_baselines_train_exactly_as_many_entries_as_there_are_biases(method):
    model = tiny_classifier()
    biases = sum(t.numel for t in bias_census(model))
    for seed in range(4):
        assert prepare(model, method, seed=seed).trainable_count(include_head=False) == biases


@pytest.mark.parametrize("method", ["rand_uniform", "rand_row_col"])
def test_random_selection_is_fixed_by_the_seed(method):
    first, again, other = (prepare(tiny_classifier(), method, seed=s).masks for s in (3, 3, 4))
    assert first.keys() == again.keys() and all(torch.equal(first[n], again[n]) for n in first)
    assert any(n not in other or not torch.equal(first[n], other[n]) for n in first)


def test_rand_row_col_selects_whole_lines():
    masks = prepare(tiny_classifier(), "rand_row_col", seed=0).masks
    full_lines = sum(int(m.all(dim=1).sum()) + int(m.all(dim=0).sum()) for m in masks.values())
    assert full_lines >= 4  # mostly whole rows and columns, not scattered entries


def test_unknown_method_names_the_choices():
    with pytest.raises(BitFitError, match="unknown method 'lora'.*full, bitfit, frozen"):
        prepare(tiny_classifier(), "lora")


@pytest.mark.parametrize("label,name", [("full", "Full-FT"), ("bitfit", "BitFit"), ("frozen", "Frozen"),
                                        ("bitfit:b_q+b_m2", "b_q + b_m2"), ("bitfit:b_m2", "b_m2"),
                                        ("rand_uniform", "random entries"), ("rand_row_col", "random rows/columns")])
def test_display_names_are_what_a_reader_sees(label, name):
    assert display_name(label) == name


def test_a_range_of_layers_trains_only_their_biases(tiny_model_dir):
    from bitfit_edu.core.methods import method_label, parse_label
    from bitfit_edu.core.readout import load_classifier
    from bitfit_edu.experiments.runs import RunConfig

    model = load_classifier(tiny_model_dir, 2, "cls_pooler")
    prepared = prepare(model, "bitfit", ("b_q", "b_m2", "b_pooler"), layers=(1, 1))
    trained = {n for n in prepared.trainable() if n.endswith(".bias") and not n.startswith("classifier")}
    assert trained == {"bert.encoder.layer.1.attention.self.query.bias", "bert.encoder.layer.1.intermediate.dense.bias",
                       "bert.pooler.dense.bias"}  # the pooler sits outside the layers
    label = method_label("bitfit", ("b_q", "b_m2"), (0, 2))
    assert label == "bitfit:b_q+b_m2@0-2" and parse_label(label) == ("bitfit", ("b_q", "b_m2"))
    assert display_name(label) == "b_q + b_m2, layers 0-2" and display_name("bitfit@3-5") == "BitFit, layers 3-5"
    config = RunConfig(model="m", task="rte", method="bitfit", layers=(0, 2)).validated()
    assert "@" not in config.run_id and "layers0-2" in config.run_id
    assert "layers" not in RunConfig(model="m", task="rte", method="bitfit").as_dict()  # old ids stay
    with pytest.raises(BitFitError, match="applies to method 'bitfit' only"):
        RunConfig(model="m", task="rte", method="full", layers=(0, 2)).validated()
