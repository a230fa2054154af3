"""Expose or learn? (notebook 09): where an encoder starts, the declared claims about it, probes and CKA,
and the toy vision transformer."""

from dataclasses import replace

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from synthetic_records import stored_record

from bitfit_edu.core.biases import bias_census, classify_bias
from bitfit_edu.core.methods import prepare
from bitfit_edu.core.readout import load_classifier
from bitfit_edu.core.representations import fit_probe, linear_cka
from bitfit_edu.core.starts import shuffle_weight_matrices
from bitfit_edu.errors import BitFitError
from bitfit_edu.evidence.claims import FAILS, HOLDS, NOT_RUN, UNRESOLVED
from bitfit_edu.evidence.expose import (
    EXPOSE_CLAIMS,
    NEAR_CHANCE,
    check_expose_claims,
    claim_verdict,
    gap_change,
    start_means,
    welch_combination,
)
from bitfit_edu.evidence.tables import runs_frame
from bitfit_edu.experiments import vision
from bitfit_edu.experiments.grids import EXPOSE_STARTS, EXPOSE_TASKS, experiment_configs, expose_configs
from bitfit_edu.experiments.profiles import get_profile
from bitfit_edu.experiments.runs import RunConfig, RunRecord

# --- where the encoder starts ------------------------------------------------------------------------------

def test_shuffling_keeps_each_matrix_values_and_moves_them(tiny_model_dir):
    pretrained = load_classifier(tiny_model_dir, 2, "mean", seed=0)
    shuffled = load_classifier(tiny_model_dir, 2, "mean", seed=0, start="shuffled")
    before, after = dict(pretrained.named_parameters()), dict(shuffled.named_parameters())
    matrices = [name for name, p in before.items() if p.dim() >= 2 and name.startswith("bert.")]
    assert matrices
    for name in matrices:
        assert torch.equal(before[name].flatten().sort().values, after[name].flatten().sort().values)
        assert not torch.equal(before[name], after[name])
    for name, p in before.items():
        if p.dim() == 1 and name.startswith("bert."):  # biases and LayerNorm keep their pre-trained values
            assert torch.equal(p, after[name])


def test_shuffling_is_drawn_by_the_seed():
    first, second, third = (torch.nn.Linear(8, 8) for _ in range(3))
    second.load_state_dict(first.state_dict())
    third.load_state_dict(first.state_dict())
    shuffle_weight_matrices(first, 1)
    shuffle_weight_matrices(second, 1)
    shuffle_weight_matrices(third, 2)
    assert torch.equal(first.weight, second.weight) and not torch.equal(first.weight, third.weight)


def test_a_random_start_is_a_new_network_of_the_same_shape(tiny_model_dir):
    pretrained = dict(load_classifier(tiny_model_dir, 2, "mean", seed=0).named_parameters())
    random = dict(load_classifier(tiny_model_dir, 2, "mean", seed=0, start="random").named_parameters())
    again = dict(load_classifier(tiny_model_dir, 2, "mean", seed=0, start="random").named_parameters())
    name = "bert.encoder.layer.0.attention.self.query.weight"
    assert random.keys() == pretrained.keys() and random[name].shape == pretrained[name].shape
    assert not torch.equal(random[name], pretrained[name]) and torch.equal(random[name], again[name])


def test_the_pooler_readout_starts_the_same_three_ways(tiny_model_dir):
    pretrained = dict(load_classifier(tiny_model_dir, 2, "cls_pooler", seed=0).named_parameters())
    for start in ("random", "shuffled"):
        other = dict(load_classifier(tiny_model_dir, 2, "cls_pooler", seed=0, start=start).named_parameters())
        assert other.keys() == pretrained.keys()
        name = "bert.encoder.layer.1.output.dense.weight"
        assert not torch.equal(other[name], pretrained[name])
        same_values = torch.equal(other[name].flatten().sort().values, pretrained[name].flatten().sort().values)
        assert same_values == (start == "shuffled")


def test_the_start_is_recorded_only_when_it_is_not_the_pretrained_one():
    config = RunConfig(model="m", task="stsb", method="bitfit")
    assert "start" not in config.as_dict()  # the records written before the field keep their ids
    assert replace(config, start="pretrained").validated().run_id == config.validated().run_id
    random = replace(config, start="random").validated()
    assert random.as_dict()["start"] == "random" and random.run_id != config.validated().run_id
    assert "from-random" in random.run_id and random.encoder_start == "random"
    assert RunConfig.from_dict(random.as_dict()) == random
    with pytest.raises(BitFitError, match="start"):
        replace(config, start="scrambled").validated()


def test_the_expose_grid_is_the_main_grid_from_other_starts():
    profile = get_profile("classroom")
    configs = expose_configs(profile)
    main = experiment_configs(profile, "main", EXPOSE_TASKS)
    assert len(configs) == len(EXPOSE_STARTS) * len(main) == 60
    assert {replace(config, start=None) for config in configs} == set(main)
    assert [config.start for config in configs[:30]] == ["random"] * 30  # the declared claims' start first
    with pytest.raises(BitFitError, match="declared"):
        experiment_configs(profile, "expose", tasks=["rte"])


# --- the declared claims --------------------------------------------------------------------------------

def frame_of(scores: dict[tuple[str, str], dict[str, list[float]]]) -> pd.DataFrame:
    """(method, start) -> task -> one last-epoch score (x100) per seed, as ``runs_frame`` gives them."""
    records = []
    for (method, start), tasks in scores.items():
        for task, values in tasks.items():
            for seed, value in enumerate(values):
                config = RunConfig(model="m", task=task, method=method, seed=seed, epochs=1, start=start).validated()
                records.append(RunRecord.from_json(stored_record(config, dev=(value / 100,))))
    return runs_frame(records)


def test_gap_change_is_the_difference_of_the_two_gaps_with_a_welch_interval():
    frame = frame_of({("bitfit", "pretrained"): {"stsb": [80, 82, 81]}, ("full", "pretrained"): {"stsb": [82, 83, 84]},
                      ("bitfit", "random"): {"stsb": [10, 14, 12]}, ("full", "random"): {"stsb": [30, 26, 28]}})
    found = gap_change(frame, "random", ["stsb"])
    assert found["estimate"] == pytest.approx((12 - 28) - (81 - 83))
    assert found["seeds"] == [3, 3, 3, 3]
    parts = [np.var(values, ddof=1) / 3 for values in ([80, 82, 81], [82, 83, 84], [10, 14, 12], [30, 26, 28])]
    df = sum(parts) ** 2 / sum(part**2 / 2 for part in parts)  # Welch-Satterthwaite
    half = stats.t.ppf(0.95, df) * np.sqrt(sum(parts))
    assert (found["low90"], found["high90"]) == (pytest.approx(-14 - half), pytest.approx(-14 + half))
    assert found["high90"] < 0


def test_welch_combination_of_one_group_is_the_t_interval_of_its_mean():
    values = pd.Series([1.0, 3.0, 2.0, 6.0])
    found = welch_combination([(1, values)])
    low, high = stats.t.interval(0.90, 3, loc=values.mean(), scale=values.std() / 2)
    assert (found["low90"], found["high90"]) == (pytest.approx(low), pytest.approx(high))
    assert np.isnan(welch_combination([(1, values[:1])])["low90"])


@pytest.mark.parametrize("claim, low, high, expected", [
    (EXPOSE_CLAIMS[0], -5.0, -1.0, HOLDS), (EXPOSE_CLAIMS[0], 1.0, 5.0, FAILS),
    (EXPOSE_CLAIMS[0], -1.0, 1.0, UNRESOLVED),
    (EXPOSE_CLAIMS[2], 2.0, NEAR_CHANCE - 0.1, HOLDS), (EXPOSE_CLAIMS[2], NEAR_CHANCE + 0.1, 30.0, FAILS),
    (EXPOSE_CLAIMS[2], 5.0, 15.0, UNRESOLVED), (EXPOSE_CLAIMS[0], np.nan, np.nan, UNRESOLVED),
])
def test_the_declared_rule_reads_the_whole_90_percent_interval(claim, low, high, expected):
    assert claim_verdict(claim, low, high) == expected


# Pre-trained and random runs on two tasks where BitFit collapses without pre-training and Full-FT less so
TWO_TASKS = {("bitfit", "pretrained"): {"stsb": [80, 82, 81], "cola": [40, 42, 41]},
             ("full", "pretrained"): {"stsb": [82, 83, 84], "cola": [50, 48, 49]},
             ("bitfit", "random"): {"stsb": [1, 3, 2], "cola": [0, 1, 0]},
             ("full", "random"): {"stsb": [20, 22, 21], "cola": [15, 16, 14]}}


def test_claims_are_judged_on_both_tasks_and_each_and_say_when_a_start_has_no_runs():
    frame = frame_of(TWO_TASKS)
    table = check_expose_claims(frame, ["stsb", "cola"])
    assert list(table["tasks"][:3]) == ["stsb + cola", "stsb", "cola"]
    widens = table[table["claim"] == EXPOSE_CLAIMS[0].statement]
    assert set(widens["verdict"]) == {HOLDS}
    assert set(table[table["claim"] == EXPOSE_CLAIMS[1].statement]["verdict"]) == {NOT_RUN}  # no shuffled runs
    assert set(table[table["claim"] == EXPOSE_CLAIMS[2].statement]["verdict"]) == {HOLDS}
    means = start_means(frame)
    assert list(means.columns) == ["pre-trained", "random"] and means.loc[("cola", "full"), "random"] == 15


# --- probes and CKA ---------------------------------------------------------------------------------------

def test_linear_cka_is_one_under_rotation_and_scale_and_low_for_unrelated_features():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 10))
    rotation, _ = np.linalg.qr(rng.normal(size=(10, 10)))
    assert linear_cka(x, 3 * x @ rotation + 5) == pytest.approx(1.0)
    assert linear_cka(x, rng.normal(size=(200, 10))) < 0.2


def test_a_probe_reads_what_is_linearly_there_and_only_that():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 8))
    labels = (x[:, 0] - x[:, 1] > 0).astype(int)
    probe = fit_probe(x[:300], labels[:300], regression=False)
    assert (probe.predict(x[300:]) == labels[300:]).mean() > 0.9
    noise = rng.integers(0, 2, size=400)
    assert (fit_probe(x[:300], noise[:300], regression=False).predict(x[300:]) == noise[300:]).mean() < 0.7
    target = x @ np.arange(8.0)
    assert np.corrcoef(fit_probe(x[:300], target[:300], regression=True).predict(x[300:]), target[300:])[0, 1] > 0.99


# --- the toy vision transformer ---------------------------------------------------------------------------

def test_vit_biases_map_to_the_papers_groups():
    assert classify_bias("layers.2.attention.q_proj.bias", "vit") == ("b_q", 2)
    assert classify_bias("layers.0.mlp.fc1.bias", "vit") == ("b_m2", 0)
    assert classify_bias("layers.1.layernorm_after.bias", "vit") == ("b_LN1", 1)
    assert classify_bias("embeddings.patch_embeddings.projection.bias", "vit") == ("b_patch", None)
    model = vision.new_vit(5, seed=0)
    groups = {term.group for term in bias_census(model)}
    assert {"b_q", "b_k", "b_v", "b_m1", "b_LN1", "b_m2", "b_m3", "b_LN2", "b_patch", "b_LN_final"} == groups


def test_bitfit_on_the_vit_trains_its_biases_and_head_and_nothing_else():
    model = vision.new_vit(5, seed=0)
    prepared = prepare(model, "bitfit")
    trainable = prepared.trainable()
    assert trainable and all(name.endswith(".bias") or name.startswith("classifier.") for name in trainable)
    assert prepared.trainable_count(include_head=False) == sum(term.numel for term in bias_census(model))


def test_the_digit_halves_do_not_overlap_and_the_loop_learns(monkeypatch):
    (train_x, train_y), (test_x, _) = vision.task_split()
    assert len(train_x) == vision.TASK_TRAIN
    assert len(train_x) + len(test_x) == len(vision.digits(vision.TASK_CLASSES)[0])
    assert set(train_y.tolist()) == set(range(5))
    images, labels = vision.digits(vision.PRETRAIN_CLASSES)
    model = vision.new_vit(5, seed=0)
    losses = vision.train(model, images[:128], labels[:128], epochs=5, rate=1e-3, batch_size=32, seed=0)
    assert losses[-1] < losses[0]
    frozen = vision.new_vit(5, seed=0)
    prepare(frozen, "frozen")
    encoder_before = {n: p.clone() for n, p in frozen.vit.named_parameters()}
    vision.train(frozen, images[:64], labels[:64], epochs=1, rate=1e-2, batch_size=32, seed=0)
    assert all(torch.equal(p, encoder_before[n]) for n, p in frozen.vit.named_parameters())


# --- the measurements, end to end on the tiny model ------------------------------------------------------

def test_probes_and_cka_are_measured_once_each_and_resumed(tiny_model_dir, glue_dir, tmp_path):
    from bitfit_edu.experiments import measurements

    profile = replace(get_profile("smoke"), model=tiny_model_dir, epochs={"full": 1, "bitfit": 1}, train_size=16,
                      train_eval_size=8, dev_size=16)
    written = measurements.measure(profile, "probes", glue_dir=glue_dir, root=tmp_path)
    assert len(written) == len(EXPOSE_TASKS) * 3
    probes = measurements.load(profile, "probes", root=tmp_path)
    assert {(p["task"], p["start"]) for p in probes} == {(t, s) for t in EXPOSE_TASKS
                                                         for s in ("pretrained", "random", "shuffled")}
    assert all(len(p["layers"]) == 3 for p in probes)  # the embeddings and the tiny model's two layers
    assert measurements.measure(profile, "probes", glue_dir=glue_dir, root=tmp_path) == []  # nothing twice
    first = measurements.measure(profile, "cka", worker=1, workers=2, glue_dir=glue_dir, root=tmp_path)
    assert len(first) == 2 and not list(tmp_path.rglob(".*.tmp"))
    for change in measurements.load(profile, "cka", root=tmp_path):
        assert len(change["cka"]) == 3 and all(0 < value <= 1 + 1e-6 for value in change["cka"])
        assert change["method"] in ("bitfit", "full") and change["committed_last"] is None


# --- the figures ------------------------------------------------------------------------------------------

def test_the_figures_say_in_words_what_they_draw():
    from bitfit_edu.evidence import plots

    means = pd.DataFrame({"pre-trained": [80.0, 70.0], "random": [20.0, 5.0]},
                         index=pd.MultiIndex.from_tuples([("stsb", "full"), ("stsb", "bitfit")]))
    chart = plots.start_bars(means, "starts", chance={"stsb": 0.0})
    assert "Full-FT pre-trained 80.0, random 20.0" in chart.alt and "BitFit pre-trained 70.0" in chart.alt
    assert len(chart.figure.axes[0].patches) == 4
    probes = pd.DataFrame({"task": "stsb", "start": ["pre-trained"] * 2 + ["random"] * 2, "layer": [0, 1, 0, 1],
                           "score": [10.0, 60.0, 5.0, 6.0]})
    chart = plots.probe_curves(probes, pd.DataFrame({"bitfit": [70.0]}, index=["stsb"]), "probes")
    assert "pre-trained encoder, layers 0 to 1: 10.0, 60.0" in chart.alt and "BitFit 70.0" in chart.alt
    cka = pd.DataFrame({"task": "stsb", "method": ["bitfit", "bitfit", "full", "full"], "layer": [0, 1, 0, 1],
                        "cka": [1.0, 0.99, 1.0, 0.9]})
    chart = plots.cka_curves(cka, "cka")
    assert "BitFit 1.000, 0.990; Full-FT 1.000, 0.900" in chart.alt
    plt.close("all")


def test_the_answer_in_words_follows_the_verdict_the_share_and_the_cka():
    from bitfit_edu.evidence.expose import grid_cost, task_answer

    held = pd.Series({"verdict": HOLDS, "value": "-12.50", "90% interval": "[-20.00, -5.00]"})
    share = {"layer": 4, "probe": 70.0, "frozen": 20.0, "bitfit": 80.0, "share": 0.9}
    text = task_answer("stsb", held, share, {"full": 20.0, "bitfit": 5.0}, {"bitfit": 0.99, "full": 0.9})
    assert "12.50 points further behind" in text and "reads 90%" in text and "representation barely changes" in text
    unresolved = pd.Series({"verdict": UNRESOLVED, "value": "+1.00", "90% interval": "[-3.00, 5.00]"})
    text = task_answer("cola", unresolved, {**share, "share": 0.3}, {"full": 1.0, "bitfit": 0.0}, None)
    assert UNRESOLVED in text and "only 30%" in text and "CKA" not in text
    failed = pd.Series({"verdict": FAILS, "value": "+8.00", "90% interval": "[+3.00, +13.00]"})
    beaten = {**share, "share": 1.9, "probe": 14.5, "bitfit": 9.8}
    text = task_answer("cola", failed, beaten, {"full": 0.0, "bitfit": 0.0}, None)
    assert "Full-FT's lead, too" in text and "more than BitFit reaches (14.5 against 9.8)" in text
    frame = frame_of({("bitfit", "random"): {"stsb": [1.0]}, ("bitfit", "pretrained"): {"stsb": [80.0]}})
    configs = expose_configs(get_profile("classroom"))
    assert grid_cost(frame, configs).startswith(f"1 of {len(configs)} runs finished")


def test_measure_vision_refuses_workers_with_one_clear_error(capsys):
    from bitfit_edu.cli import main

    assert main(["measure", "vision", "--worker", "1/2"]) == 2
    assert "drop it" in capsys.readouterr().err


def test_the_headline_answer_follows_the_declared_verdicts_and_the_measurements():
    from bitfit_edu.evidence.expose import headline

    frame = frame_of(TWO_TASKS)
    verdicts = check_expose_claims(frame, ["stsb", "cola"])
    shares = pd.DataFrame({"share": [0.9, 1.5]}, index=["stsb", "cola"])
    text = headline(verdicts, shares, {"stsb": {"bitfit": 0.2, "full": 0.1}})
    assert "stays near chance" in text and f"**{HOLDS}**" in text
    assert "mostly **exposes**" in text and "on STS-B exposing it re-shapes" in text
    text = headline(verdicts, pd.DataFrame({"share": [0.3, 0.2]}, index=["stsb", "cola"]), {})
    assert "reads little" in text and "part of what it reaches it builds" in text


def test_a_claim_whose_methods_have_not_all_run_says_so():
    frame = frame_of({("bitfit", "pretrained"): {"stsb": [80, 82]}, ("full", "pretrained"): {"stsb": [82, 83]},
                      ("bitfit", "shuffled"): {"stsb": [10.0]}})
    table = check_expose_claims(frame, ["stsb"])
    assert table.set_index("claim").loc[EXPOSE_CLAIMS[1].statement, "verdict"] == NOT_RUN
