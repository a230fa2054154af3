"""The lesson plans fit their length by the notebooks' own measure, and name only sections that exist."""

import pytest

from bitfit_edu.classroom import plans


@pytest.mark.parametrize("plan", plans.PLANS, ids=lambda plan: plan.title)
def test_every_plan_fits_its_length(plan):
    assert plan.fits(), f"{plan.title}: {plan.minutes():.0f} minutes for a {plan.length}-minute lesson"
    assert all(step.chosen() for step in plan.steps)


def test_a_section_measures_its_prose_and_its_cells():
    found = plans.sections("02_bias_freezing")
    words, seconds = found["A BitFit run, live"]
    assert words > 20 and seconds > 0, "the live run's cells ran in the committed execution"
    assert found["What BitFit trains"][0] > 0


def test_a_plan_naming_a_missing_section_says_which_sections_exist():
    step = plans.Step("07_lab", ("No such section",), "nothing")
    with pytest.raises(ValueError, match="07_lab has no section starting"):
        step.minutes()


def test_the_guide_lists_what_each_plan_skips():
    text = plans.PLANS[0].markdown()
    assert "It fits." in text and "Skipped in class" in text and "*Things to try*" in text
