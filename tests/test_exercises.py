"""Exercises check themselves: every answer is computed, a right answer passes, a wrong one does not."""

import pytest

from bitfit_edu.classroom import exercises
from bitfit_edu.classroom.key import ANSWERS
from bitfit_edu.errors import BitFitError


def right(exercise):
    if exercise.function is not None:
        return ANSWERS[exercise.name].solution
    expected = exercise.answer()
    return expected.upper() if isinstance(expected, str) else expected


def wrong(exercise):
    if exercise.function is not None:
        return lambda *arguments: 0
    expected = exercise.answer()
    if exercise.choices:
        return next(letter for letter in exercise.choices if letter != expected)
    return expected * 1.5 + 1


@pytest.mark.parametrize("key", sorted(exercises.EXERCISES))
def test_each_exercise_accepts_its_answer_and_refuses_another(key, capsys, shared_glue_dir, classroom_model):
    exercise = exercises.EXERCISES[key]
    exercises.check(key, right(exercise))
    assert capsys.readouterr().out.startswith("Right. ")
    exercises.check(key, wrong(exercise))
    assert capsys.readouterr().out.startswith("Not quite")
    exercises.answer(key)
    assert capsys.readouterr().out.startswith("A model solution:" if exercise.function else "Answer: ")


def test_no_answer_prints_the_question_and_choices(capsys):
    exercises.check("01.b_k")
    out = capsys.readouterr().out
    assert out.startswith("Why can b_k not change") and "  (b) it shifts all" in out and "Replace None" in out


def test_an_unknown_exercise_is_a_clear_error():
    with pytest.raises(BitFitError, match="unknown exercise '99.x'"):
        exercises.check("99.x", "a")


def test_a_word_where_a_number_is_wanted_is_a_clear_error():
    with pytest.raises(BitFitError, match="this exercise wants a number .*, not 'b'"):
        exercises.check("01.layer_biases", "b")


@pytest.mark.parametrize("key", sorted(exercises.EXERCISES))
def test_a_wrong_answer_gets_a_hint_never_the_answer(key, capsys, shared_glue_dir, classroom_model):
    exercise = exercises.EXERCISES[key]
    exercises.check(key, wrong(exercise))
    out = capsys.readouterr().out
    assert exercise.why() not in out and (exercise.hint or exercises.GENERIC_HINT) in out
    if exercise.function is not None:
        assert "def " not in out and str(exercise.answer()[0])[:12] not in out
    elif not exercise.choices:
        expected = exercise.answer()
        assert f"{expected:,}" not in out and f"{expected:.3g}" not in out


def test_the_course_meets_its_exercise_targets():
    counts = exercises.exercise_counts()
    assert all(exercises.exercise_targets().values()), counts
    assert counts["code"] >= 8 and 3 * counts["transfer"] >= counts["all"]


def test_a_coding_exercise_wants_a_function_and_says_which_input_failed(capsys):
    with pytest.raises(BitFitError, match=r"wants your function \(lora_entries\(hidden"):
        exercises.check("08.lora_entries", 294912)
    exercises.check("08.lora_entries", lambda hidden, layers, rank, adapted: layers * adapted * rank * hidden)
    assert "differs on rank 8 on W_q and W_v of BERT-large" in capsys.readouterr().out
    exercises.check("08.lora_entries", None)
    assert "pass it in place of None" in capsys.readouterr().out


def test_without_the_answer_key_check_only_says_the_answer_is_ready_and_answer_withholds(monkeypatch, capsys):
    monkeypatch.setattr(exercises, "answer_key", dict)  # as in a graded class's student build
    exercises.check("01.b_k", "(B)")
    exercises.check("01.layer_biases", "8,448")
    out = capsys.readouterr().out
    assert "Your answer, b, is ready to hand in" in out and "Your answer, 8,448, is ready" in out
    assert "Right" not in out and "Not quite" not in out and out.count(exercises.WITHHELD) == 2
    exercises.answer("01.b_k")
    assert capsys.readouterr().out.strip() == exercises.WITHHELD
    exercises.check("01.attention_head", lambda *weights: 1 / 0)
    assert "raised an error on 4 tokens of width 8" in capsys.readouterr().out
    exercises.check("08.lora_entries", lambda hidden, layers, rank, adapted: 0)
    assert "ran on all 3 of its inputs" in capsys.readouterr().out
    with pytest.raises(BitFitError, match="the answer to 01.b_k is not here"):
        exercises.EXERCISES["01.b_k"].answer()
    with pytest.raises(BitFitError, match="one of the letters a, b, c, not 'z'"):
        exercises.check("01.b_k", "z")
