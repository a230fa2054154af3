"""The lab's choice of what trains, driven as a student would: boxes ticked, the slider moved, counts read."""

import pytest

from bitfit_edu.lab import ModelShape, WhatTrains, log_bar, scaled_layers
from bitfit_edu.profiles import CLASSROOM_MODEL


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
    assert counts["all-MiniLM-L6-v2"] == (26_498, 22_566_146)  # as the committed BitFit records count
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
