"""Each coding exercise's model solution (in the answer key) agrees with the package's own code, and a student's
function is judged the same way in the notebook and in the grader (from the outputs it recorded)."""

import json

import pytest
import torch

from bitfit_edu.classroom import coding, key
from bitfit_edu.classroom.coding import CODING
from bitfit_edu.classroom.exercises import EXERCISES
from bitfit_edu.classroom.key import ANSWERS
from bitfit_edu.core import adapters, biases, counting, equations
from bitfit_edu.core.methods import prepare
from bitfit_edu.evidence import claims
from bitfit_edu.experiments import training


def arguments(key):
    return [case.arguments() for case in CODING[key].cases]


def test_attention_head_is_the_encoders_attention_with_one_head_and_ignores_b_k():
    for x, W_q, b_q, W_k, b_k, W_v, b_v in arguments("01.attention_head"):
        Q, K, V = (equations.affine(x, W, b)[None] for W, b in ((W_q, b_q), (W_k, b_k), (W_v, b_v)))
        found = key.attention_head(x, W_q, b_q, W_k, b_k, W_v, b_v)
        torch.testing.assert_close(found, equations.att(Q, K, V, num_heads=1)[0])
        torch.testing.assert_close(found, key.attention_head(x, W_q, b_q, W_k, 0 * b_k, W_v, b_v),
                                   rtol=1e-4, atol=1e-5)


def test_welch_interval_is_the_claims_interval():
    import pandas as pd

    for case in arguments("03.welch_interval"):
        ours, theirs, *level = case
        found = claims.welch_interval(pd.Series(ours), pd.Series(theirs))
        low, high = key.welch_interval(ours, theirs, *level)
        suffix = "" if level == [0.95] else "90"
        assert low == pytest.approx(found[f"low{suffix}"]) and high == pytest.approx(found[f"high{suffix}"])


@pytest.mark.parametrize("model", ["bert-base-cased", "bert-large-cased"])
def test_trained_entries_is_the_bias_census(model):
    config = counting.load_config(model)
    table = biases.census_table(counting.meta_encoder(model))
    for groups in ({"b_q", "b_m2"}, set(biases.LAYER_GROUPS), {"b_LN1", "b_LN2"}):
        expected = int(table.loc[sorted(groups), "total"].sum())
        assert key.trained_entries(config.hidden_size, config.num_hidden_layers, groups) == expected


def test_mean_abs_change_is_what_a_run_records():
    (model,) = coding._tiny_bert("bitfit")
    census = biases.bias_census(model)
    before = biases.snapshot_biases(model, census)
    with torch.no_grad():
        for parameter in biases.bias_parameters(model).values():
            parameter.add_(0.1 * torch.randn_like(parameter))
    after = biases.snapshot_biases(model, census)
    rows = training.bias_change(before, after, census)
    found = key.mean_abs_change(before, after)
    assert [found[t.name] for t in census] == pytest.approx([row["mean_abs_change"] for row in rows])


def test_trainable_percent_is_the_prepared_models_share():
    for method in ("bitfit", "frozen", "full"):
        (model,) = coding._tiny_bert(method)
        prepared = prepare(model, method)
        expected = 100 * prepared.trainable_count() / prepared.total_count()
        assert key.trainable_percent(model) == pytest.approx(expected)


def test_lora_entries_is_what_peft_adds():
    import peft

    encoder = counting.meta_encoder("bert-base-cased")
    adapters.inject(encoder, "lora_r8")
    assert key.lora_entries(768, 12, 8, 2) == sum(p.numel() for n, p in encoder.named_parameters() if ".lora_" in n)
    large = counting.meta_encoder("bert-large-cased")
    every_attention_matrix = ["query", "key", "value", "attention.output.dense"]
    peft.inject_adapter_in_model(peft.LoraConfig(r=16, target_modules=every_attention_matrix), large)
    assert key.lora_entries(1024, 24, 16, 4) == sum(p.numel() for n, p in large.named_parameters() if ".lora_" in n)


@pytest.mark.parametrize("key", sorted(CODING))
def test_the_recorded_outputs_judge_as_the_function_does(key):
    exercise, expected = CODING[key], EXERCISES[key].answer()
    recorded = json.loads(json.dumps(exercise.outputs(ANSWERS[key].solution)))
    assert exercise.first_failure(recorded, expected) is None
    assert exercise.first_failure(json.loads(json.dumps(exercise.outputs(lambda *a: 0))), expected) == \
        exercise.cases[0].about


def test_a_function_that_raises_or_returns_nan_fails_on_that_input_and_says_why():
    exercise, expected = CODING["08.lora_entries"], EXERCISES["08.lora_entries"].answer()
    raising = exercise.first_failure(exercise.outputs(lambda hidden, *rest: 1 / 0 if hidden == 768 else
                                                      key.lora_entries(hidden, *rest)), expected)
    assert raising.startswith(exercise.cases[1].about) and "ZeroDivisionError" in raising
    assert exercise.first_failure([float("nan")] * 3, expected) == exercise.cases[0].about
    assert exercise.first_failure([1, 2], expected) == "the answer is not a function's outputs"
