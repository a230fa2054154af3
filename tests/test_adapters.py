"""LoRA, IA3 and BEFT through peft (issue #22): what they train, counted two ways, and their grids."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_bert_config
from synthetic_records import record, stored_record
from test_training import tiny_run
from transformers import BertModel

from bitfit_edu.core import adapters, counting
from bitfit_edu.core.biases import bias_census, head_parameters
from bitfit_edu.core.counting import method_parameters
from bitfit_edu.core.methods import prepare
from bitfit_edu.core.readout import MeanPoolingClassifier
from bitfit_edu.errors import BitFitError
from bitfit_edu.evidence import claims, tables
from bitfit_edu.experiments.grids import PEFT, PEFT_SEEDS, experiment_configs
from bitfit_edu.experiments.profiles import get_profile
from bitfit_edu.experiments.runs import RunRecord


def tiny_classifier() -> MeanPoolingClassifier:
    torch.manual_seed(0)
    return MeanPoolingClassifier(BertModel(tiny_bert_config(), add_pooling_layer=False), num_labels=2)


@pytest.mark.parametrize("method", PEFT)
def test_our_count_by_kind_equals_peft_count(method):
    ours = counting.trainable_kinds(prepare(tiny_classifier(), method))
    assert sum(ours.values()) == counting.peft_count(tiny_classifier(), method)
    assert ours["head"] == 2 * 32 + 2 and ours["existing biases"] == ours["other pre-trained weights"] == 0


def test_every_method_is_a_share_of_one_denominator():
    bitfit, lora = prepare(tiny_classifier(), "bitfit"), prepare(tiny_classifier(), "lora_r8")
    assert lora.total_count() > bitfit.total_count()  # LoRA's matrices are new parameters of the model
    assert counting.pretrained_count(lora.model) == counting.pretrained_count(bitfit.model) \
        == bitfit.total_count() - (2 * 32 + 2)  # what came with the checkpoint: the head left out
    # a record made before runs recorded it: a LoRA run's total holds its adapters, so the denominator comes from a
    # run that adds nothing to the model
    old = [record("bitfit", task=task) for task in ("rte", "mrpc")]
    old += [RunRecord.from_json({**stored, "params": {**stored["params"], "total": 5000, "trainable": 30,
                                                      "trainable_without_head": 28}})
            for stored in (stored_record(record("lora_r8", task=task).config) for task in ("rte", "mrpc"))]
    frame = tables.runs_frame(old)
    assert set(frame["encoder"]) == {998}
    assert tables.efficiency_table(frame, ("lora_r8", "bitfit"))["% of the model"].tolist() == ["2.81%", "0.802%"]


def test_random_baselines_count_the_entries_they_train():
    prepared = prepare(tiny_classifier(), "rand_uniform")
    kinds = counting.trainable_kinds(prepared)
    assert sum(kinds.values()) == prepared.trainable_count() < sum(p.numel() for p in prepared.trainable().values())


def test_each_method_trains_its_own_kind_on_the_real_model(classroom_model):
    table = method_parameters(classroom_model, "mean", ("bitfit", *PEFT))
    assert (table.loc[table.index != "BitFit", "total"] == table.loc[table.index != "BitFit", "peft's count"]).all()
    hidden, layers = 384, 6
    assert table.loc["LoRA r=8 (W_q, W_v)", "LoRA matrices"] == 8 * 2 * (hidden + hidden) * layers
    assert table.loc["BEFT (W_v)", "new biases"] == hidden * layers
    assert table.loc["BitFit", "existing biases"] == 25_728 and table.loc["BitFit", "new biases"] == 0
    # BEFT on every linear layer reaches every bias but the LayerNorms' (2 per layer, 1 in the embeddings)
    beyond_beft = table.loc["BitFit", "existing biases"] - table.loc["BEFT (every linear)", "new biases"]
    assert beyond_beft == (2 * layers + 1) * hidden
    # r=3 is the rank whose LoRA count comes closest to BitFit's
    per_rank = table.loc["LoRA r=8 (W_q, W_v)", "LoRA matrices"] // 8
    closest = min(range(1, 9), key=lambda r: abs(r * per_rank - table.loc["BitFit", "existing biases"]))
    assert closest == 3


def test_the_bias_census_sees_through_peft_wrappers():
    plain = tiny_classifier()
    wrapped = prepare(tiny_classifier(), "lora_r8").model
    before, after = bias_census(plain), bias_census(wrapped)
    assert [(t.group, t.layer) for t in before] == [(t.group, t.layer) for t in after]
    assert any(".base_layer." in t.name for t in after)


def test_a_lora_step_moves_only_the_adapters_and_the_head():
    model = prepare(tiny_classifier(), "lora_r8").model
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    batch = {"input_ids": torch.randint(5, 20, (4, 6)), "attention_mask": torch.ones(4, 6, dtype=torch.long)}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(2):  # B starts at zero, so A has no gradient before B has moved
        model(**batch, labels=torch.tensor([0, 1, 0, 1])).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    head = set(head_parameters(model))
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert moved and all(".lora_" in n or n in head for n in moved)
    assert any(".lora_A." in n for n in moved) and any(".lora_B." in n for n in moved)


def test_a_peft_run_writes_a_record(tiny_model_dir, glue_dir):
    result = tiny_run(tiny_model_dir, glue_dir, "beft_all", readout="mean")
    assert result.label == "beft_all"
    assert result.params.trainable_without_head == 4 * 32 * 2 + 64 * 2 + 32 * 2  # q, k, v, m1; m2; m3
    assert all(change.mean_abs_change == 0 for change in result.bias_change)  # the existing biases stay


def test_peft_experiments_match_the_main_grid():
    profile = get_profile("classroom")
    runs = experiment_configs(profile, "peft")
    assert len(runs) == len(PEFT) * len(profile.tasks) * PEFT_SEEDS
    main = experiment_configs(profile, "main")[1]
    for config in runs:
        assert (config.epochs, config.train_size, config.bf16, config.batch_size) == \
               (profile.epochs_for("bitfit"), main.train_size, main.bf16, main.batch_size)
    sweep = experiment_configs(profile, "peft_sweep")
    assert {c.task for c in sweep} == {profile.sweep_task} and {c.method for c in sweep} == set(PEFT)
    assert {c.epochs for c in sweep} == {profile.sweep_settings["epochs"]}


def test_profile_rates_are_the_sweeps_best(classroom_results):
    profile = get_profile("classroom")
    records, missing = classroom_results.load(experiment_configs(profile, "peft_sweep"))
    assert missing == []
    assert tables.best_rates(records) == {method: profile.learning_rate(method) for method in PEFT}
    _, missing = classroom_results.load(experiment_configs(profile, "peft"))
    assert missing == [], "committed peft runs no longer match their configs"


def test_best_rates_takes_each_methods_highest_best_score():
    records = [record("ia3", learning_rate=rate, dev=(score,))
               for rate, score in ((1e-3, 0.5), (1e-2, 0.7), (3e-2, 0.6))]
    assert tables.best_rates(records) == {"ia3": 1e-2}


def test_efficiency_table_and_seed_spread():
    records = [record(label, seed=seed, task=task, dev=(score + seed / 100,))
               for label, score in (("bitfit", 0.6), ("lora_r8", 0.7))
               for seed in range(3) for task in ("rte", "mrpc")]
    frame = tables.runs_frame(records)
    table = tables.efficiency_table(frame, ("lora_r8", "bitfit"))
    assert list(table.index) == ["LoRA r=8 (W_q, W_v)", "BitFit"]
    assert table.loc["BitFit", "avg"] == "61.0 ± 1.0"
    assert table.loc["BitFit", "% of the model"] == "0.802%"  # 8 of 998: the head left out
    spread = tables.seed_spread(frame, ("lora_r8", "bitfit"))
    assert list(spread["method"]) == ["lora_r8"] * 3 + ["bitfit"] * 3
    assert spread["average"].round(1).tolist() == [70.0, 71.0, 72.0, 60.0, 61.0, 62.0]


def test_peft_claims_name_their_source_and_margin():
    records = [record(label, seed=seed, dev=(score + seed / 1000,))
               for label, score in (("bitfit", 0.6), ("lora_r8", 0.6), ("lora_r3", 0.6), ("beft", 0.5),
                                    ("beft_all", 0.6)) for seed in range(3)]
    table = claims.check_claims(tables.runs_frame(records), claims.PEFT_CLAIMS)
    assert table.loc["BitFit scores like LoRA r=8 (within the margin, either way)", "paper: gap"] == \
        "LoRA paper: -2.0 (RoBERTa-base)"
    assert table.loc["BitFit scores like LoRA r=8 (within the margin, either way)", "verdict"] == claims.HOLDS
    assert table.loc["BitFit is not far below LoRA r=8 (one-sided)", "verdict"] == claims.HOLDS
    assert table.loc["BitFit is not far below LoRA r=8 (one-sided)", "p (|gap| >= margin)"] == ""
    assert table.loc["BEFT on W_v (new biases) is below BitFit (existing biases)", "verdict"] == claims.HOLDS
    assert table.loc["BEFT on every linear layer is below BitFit", "paper: gap"] == "not in either paper"


def test_an_unknown_peft_method_is_one_clear_error():
    with pytest.raises(BitFitError, match="unknown peft method 'lora_r99'"):
        adapters.peft_config("lora_r99")


def test_beft_trains_as_bitfit_on_the_same_biases_would():
    """y = W x + b + b' depends on b + b' only, so dL/db' = dL/db at every step: without weight decay, AdamW
    moves a new zero bias b' exactly as BitFit moves b. BEFT on every linear layer is BitFit without the
    LayerNorm biases (same function after every step, up to float rounding)."""
    config = tiny_bert_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    models = {}
    for method, groups in (("beft_all", "all"), ("bitfit", ("b_q", "b_k", "b_v", "b_m1", "b_m2", "b_m3"))):
        torch.manual_seed(0)
        model = MeanPoolingClassifier(BertModel(config, add_pooling_layer=False), num_labels=2)
        models[method] = prepare(model, method, groups).model
    batch = {"input_ids": torch.randint(5, 20, (4, 6), generator=torch.Generator().manual_seed(1)),
             "attention_mask": torch.ones(4, 6, dtype=torch.long), "labels": torch.tensor([0, 1, 0, 1])}
    start = models["bitfit"](**batch).logits.detach()
    for model in models.values():
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.0)
        for _ in range(5):
            model(**batch).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    logits = [model(**batch).logits for model in models.values()]
    assert torch.allclose(*logits, atol=1e-5)
    assert not torch.allclose(logits[1], start, atol=1e-3)  # training moved them
