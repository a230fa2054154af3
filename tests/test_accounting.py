"""The paper's parameter counts, reproduced from configs alone (meta device: no weights, no network)."""

import pytest

from bitfit_edu.core.counting import accounting_table, count_parameters, truncate


def test_bert_base_bias_count_matches_the_paper():
    acc = count_parameters("bert-base-cased")
    assert acc.biases == 102_912
    layers = sum(n for g, n in acc.per_group.items() if g not in ("b_LN_emb", "b_pooler"))
    assert layers == 101_376 and layers // 12 == 8_448
    assert acc.per_group["b_LN_emb"] == 768 and acc.per_group["b_pooler"] == 768
    assert acc.per_group["b_q"] + acc.per_group["b_m2"] == 46_080
    assert acc.total == 108_310_272


def test_bert_large_bias_count_matches_the_paper():
    acc = count_parameters("bert-large-cased")
    assert acc.biases == 272_384
    assert (acc.biases - 2 * 1024) // 24 == 11_264


def test_which_rounding_gives_the_papers_percentages():
    table = accounting_table(["bert-base-cased", "bert-large-cased", "roberta-base"])
    base = table.loc["bert-base-cased"]
    assert base["bias %"] == pytest.approx(0.0950, abs=1e-4)
    assert base["bias % (round)"] == 0.10 and base["bias % (truncated)"] == 0.09 == base["paper %"]
    assert table.loc["bert-large-cased", "bias % (round)"] == 0.08 == table.loc["bert-large-cased", "paper %"]
    # RoBERTa's head (768x768 + 768x2) dwarfs its biases: the two counts differ by a factor of ~6.
    roberta = table.loc["roberta-base"]
    assert roberta["head params"] == 768 * 768 + 768 + 768 * 2 + 2
    assert roberta["bias+head %"] > 5 * roberta["bias %"]


def test_head_size_follows_num_labels():
    assert count_parameters("bert-base-cased", num_labels=3).head == 768 * 3 + 3


def test_truncate_never_rounds_up():
    assert truncate(0.0950) == 0.09 and truncate(0.0999) == 0.09 and truncate(0.08) == 0.08
