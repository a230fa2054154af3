"""The lab's choice of what trains, driven as a student would: boxes ticked, the slider moved, counts read."""

import time

import pytest

from bitfit_edu.classroom.lab import WhatTrains, comparison, log_bar, scaled_layers
from bitfit_edu.core.counting import ModelShape
from bitfit_edu.experiments.profiles import CLASSROOM_MODEL


@pytest.fixture(scope="module")
def picker():
    return WhatTrains(ModelShape.from_config(CLASSROOM_MODEL, "mean"),
                      ModelShape.from_config("bert-base-cased", "cls_pooler"))


def choose(picker, groups, layers=None, head=True):
    for group, box in picker.boxes.items():
        box.value = group in groups or (group == "head" and head)
    picker.layers.value = layers or (0, picker.model.depth - 1)
    return picker.counts()


@pytest.mark.usefixtures("classroom_model")  # the classroom model's config comes from ../shared's hub cache
def test_every_box_counts_what_a_run_of_that_method_trains(picker):
    counts = choose(picker, set(picker.boxes))
    # as the committed BitFit records count; the share's denominator is the encoder, their total less the head
    assert counts["all-MiniLM-L6-v2"] == (26_498, 22_566_146 - (384 * 2 + 2))
    assert counts["bert-base-cased"][0] == 102_912 + 768 * 2 + 2  # the paper's bias count, and a 2-label head
    assert choose(picker, {"b_q", "b_m2"}, head=False)["all-MiniLM-L6-v2"][0] == 11_520  # 5H x 6 layers
    assert "11,520" in picker.summary.value and "0.051%" in picker.summary.value


@pytest.mark.usefixtures("classroom_model")
def test_the_layer_slider_takes_the_same_share_of_bert_base(picker):
    counts = choose(picker, {"b_q", "b_m2"}, layers=(0, 2), head=False)
    assert counts["all-MiniLM-L6-v2"][0] == 3 * 5 * 384 and counts["bert-base-cased"][0] == 6 * 5 * 768
    assert scaled_layers((3, 5), 6, 12) == (6, 11)


@pytest.mark.usefixtures("classroom_model")
def test_the_pooler_box_counts_for_bert_base_only(picker):
    counts = choose(picker, {"b_pooler"}, head=False)
    assert counts["all-MiniLM-L6-v2"][0] == 0 and counts["bert-base-cased"][0] == 768  # mean readout: no pooler
    assert picker.groups == ("b_pooler",) and picker.head is False


def test_the_log_bar_places_a_count_between_its_powers_of_ten():
    bar = log_bar(10**4, 10**8, width=400)
    assert "width:200px" in bar and bar.count("border-left") == 8


@pytest.fixture
def lab(shared_glue_dir, classroom_model, classroom_results):
    from bitfit_edu.classroom.lab import Lab
    from bitfit_edu.evidence import tables
    from bitfit_edu.experiments import grids
    from bitfit_edu.experiments.profiles import get_profile

    records, _ = classroom_results.load(grids.experiment_configs(get_profile("classroom"), "main"))
    return Lab(get_profile("smoke"), grid=tables.runs_frame(records))


def test_train_runs_the_chosen_biases_live_and_tables_the_run(lab):
    choose(lab.picker, {"b_q", "b_m2"}, layers=(3, 5))
    lab.method.value, lab.steps.value = "chosen", 20
    lab.train(wait=True)
    (record, stopped), = lab.finished
    assert record.label == "bitfit:b_q+b_m2@3-5" and not stopped and record.epochs[-1].step == 20
    assert lab.progress.value == 20 and lab.curves.value.startswith('<img src="data:image/png;base64,')
    assert 'alt="Live curves of ' in lab.curves.value and "dev score (x100) at" in lab.curves.value
    assert record.params.trainable_without_head == 3 * 5 * 384
    assert "lab #1" in lab.table.value and "Finished after 20 steps" in lab.status.value
    assert lab.train_button.disabled is False and lab.stop_button.disabled is True


def test_stop_ends_the_run_after_the_current_step_and_keeps_what_was_measured(lab):
    lab.method.value, lab.steps.value, lab.task.value = "bitfit", 300, "sst2"
    lab.train()
    deadline = time.monotonic() + 120
    while lab.progress.value < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    lab.stop()
    lab.wait(timeout=120)
    (record, stopped), = lab.finished
    assert stopped and 3 <= record.epochs[-1].step < 300  # evaluated at the step it stopped
    assert "Stopped after" in lab.status.value
    assert "committed grid" in lab.table.value  # BitFit on SST-2 is in the main grid
    lab.finished.append(lab.finished[0])
    assert list(comparison(lab.finished, lab.grid).index) == ["lab #1", "committed grid", "lab #2", "committed grid"]


def test_a_choice_that_cannot_train_says_why(lab):
    choose(lab.picker, set(), head=True)
    lab.method.value = "chosen"
    lab.train()
    assert "no bias group is ticked" in lab.status.value and not lab.finished
