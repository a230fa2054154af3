"""The student edition holds no answers, and grading survives what students hand in, hostile or not."""

import csv
import io
import json
import os
import subprocess
import sys
from contextlib import redirect_stdout

import nbformat
import pytest

from bitfit_edu import cli
from bitfit_edu.classroom import exercises, grading
from bitfit_edu.classroom.exercises import EXERCISES
from bitfit_edu.data.locations import repo_root
from bitfit_edu.errors import BitFitError

NOTEBOOK = "01_transformer_equations.ipynb"
IMPORT = "from bitfit_edu.classroom import exercises"


@pytest.fixture(scope="module")
def student_notebooks(tmp_path_factory):
    out = tmp_path_factory.mktemp("student")
    grading.student_edition(out)
    return out


def test_student_edition_has_every_notebook_and_no_answer_cells(student_notebooks):
    course = sorted(p.name for p in (repo_root() / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert sorted(p.name for p in student_notebooks.glob("*.ipynb")) == course
    for path in student_notebooks.glob("*.ipynb"):
        notebook = nbformat.read(path, as_version=4)
        assert not [c for c in notebook.cells if "answer" in c.metadata.get("tags", [])]
        assert not [c for c in notebook.cells if "exercises.answer(" in c.source]
        checks = [c for c in notebook.cells if grading.is_exercise_cell(c)]
        assert checks and all(c.outputs == [] for c in checks), path.name


def test_no_computed_answer_appears_anywhere_in_the_student_notebooks(student_notebooks):
    text = "\n".join(path.read_text() for path in student_notebooks.glob("*.ipynb"))
    for key in EXERCISES:
        printed = io.StringIO()
        with redirect_stdout(printed):
            exercises.answer(key)
        answer_line, why = printed.getvalue().splitlines()[0], EXERCISES[key].why()
        assert json.dumps(answer_line)[1:-1] not in text, key
        assert json.dumps(why)[1:-1] not in text, key


def test_the_full_notebooks_do_hold_the_answers_the_edition_removes():
    text = (repo_root() / "notebooks" / "04_ablations.ipynb").read_text()
    assert 'exercises.answer(\\"04.random_baseline\\")' in text


def test_no_student_notebook_points_at_a_cell_the_edition_removed(student_notebooks):
    for path in student_notebooks.glob("*.ipynb"):
        prose = " ".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown")
        assert "collapsed cell below" not in prose and "answer cell" not in prose, path.name


def test_a_student_build_has_no_answer_key_and_works_from_any_folder(tmp_path):
    out = tmp_path / "course"
    written = grading.student_build(out)
    assert len(written) == 9 and (out / "results" / "classroom").is_dir() and (out / "pyproject.toml").is_file()
    assert not (out / "bitfit_edu" / "classroom" / "key.py").exists() and not list(out.rglob("__pycache__"))
    script = ("from bitfit_edu.classroom import exercises; from bitfit_edu.data.locations import results_folder; "
              "exercises.check('01.b_k', 'b'); exercises.answer('01.b_k'); print(len(exercises.answer_key()), "
              "results_folder())")
    found = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(out)})
    assert "Your answer, b, is ready to hand in" in found.stdout and exercises.WITHHELD in found.stdout
    assert found.stdout.strip().endswith(f"0 {out / 'results'}"), found.stderr[-500:]
    with pytest.raises(BitFitError, match="is not an empty folder"):
        grading.student_build(out)
    with pytest.raises(BitFitError, match="is not an empty folder"):
        grading.student_build(out / "pyproject.toml")  # a file, not a folder


ATTENTION_HEAD = """import math, torch
def attention_head(x, W_q, b_q, W_k, b_k, W_v, b_v):
    Q, K, V = x @ W_q.T + b_q, x @ W_k.T + b_k, x @ W_v.T + b_v
    return torch.softmax(Q @ K.T / math.sqrt(Q.shape[-1]), dim=-1) @ V
exercises.check("01.attention_head", attention_head)"""


def submission(folder, name, cells):
    folder.mkdir(parents=True, exist_ok=True)
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in cells])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, folder / name)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("submissions")
    submission(root / "alice", NOTEBOOK, [IMPORT, 'exercises.check("01.b_k", "b")',
                                          'exercises.check("01.layer_biases", 11 * 768)', ATTENTION_HEAD])
    submission(root / "bob", NOTEBOOK, [IMPORT, 'exercises.check("01.b_k", "a")',
                                        'exercises.check("01.layer_biases", None)  # exercise 2',
                                        'exercises.check("01.attention_head", lambda x, *weights: x)'])
    (root / "carol").mkdir()
    (root / "carol" / NOTEBOOK).write_text("{ this is not a notebook")
    submission(root / "dave", NOTEBOOK, [IMPORT, 'exercises.check("01.b_k", "b")', "while True:\n    pass",
                                         'exercises.check("01.layer_biases", 8448)'])
    submission(root / "eve", NOTEBOOK, [
        IMPORT, 'exercises.check("01.b_k", 1 / 0)',
        'print("#grade-0000000000000000#" + \'{"key": "01.layer_biases", "answer": 8448}\')',
        'exercises.check = lambda *args, **kwargs: print("Right.")',
        'exercises.check("01.layer_biases", 5)'])
    submission(root / "frank", NOTEBOOK, [IMPORT, 'exercises.check("01.b_k", "b")', "import os\nos._exit(1)",
                                          'exercises.check("01.layer_biases", 8448)'])
    submission(root / "grace", NOTEBOOK, [IMPORT, 'exercises.check("01.b_k", "b"'])  # a syntax error
    submission(root / "heidi", NOTEBOOK, ["from bitfit_edu.classroom import exercises as ex",
                                          'ex.check("01.b_k", answer="b")', 'ex.check("01.layer_biases", "8,448")'])
    (root / "ivan").mkdir()  # saved by a tool that leaves out empty outputs, with an answer too big for a float
    (root / "ivan" / NOTEBOOK).write_text(json.dumps({
        "nbformat": 4, "nbformat_minor": 5, "metadata": {"kernelspec": {"name": "python3", "language": "python",
                                                                        "display_name": "Python 3"}},
        "cells": [{"cell_type": "code", "metadata": {}, "source": source}
                  for source in (IMPORT, 'exercises.check("01.layer_biases", 10**400)')]}))
    (root / "judy").mkdir()
    (root / "judy" / NOTEBOOK).symlink_to(root / "alice" / NOTEBOOK)
    (root / "mallory").mkdir()  # an empty folder
    out = root / "grades.csv"
    unsafe = ["--unsafe"] if grading.BWRAP is None else []  # test_sandbox.py needs bubblewrap; these do not
    assert cli.main(["classroom", "grade", str(root), "--timeout", "40", "--csv", str(out), *unsafe]) == 0
    rows = list(csv.DictReader(out.open()))
    return {(row["student"], row["exercise"]): row for row in rows}


def test_right_and_wrong_answers_some_computed_in_the_cell(graded):
    assert graded[("alice", "01.b_k")]["result"] == "right"
    assert graded[("alice", "01.layer_biases")]["result"] == "right"
    assert graded[("bob", "01.b_k")]["result"] == "wrong" and "answered (a)" in graded[("bob", "01.b_k")]["why"]


def test_a_function_is_judged_on_its_outputs_and_a_wrong_one_is_told_which_input_failed(graded):
    assert graded[("alice", "01.attention_head")]["result"] == "right"
    row = graded[("bob", "01.attention_head")]
    assert row["result"] == "wrong" and row["why"] == "the function's result differs on 4 tokens of width 8"


def test_keyword_answers_aliased_imports_and_numbers_with_commas_are_graded_as_what_they_are(graded):
    assert graded[("heidi", "01.b_k")]["result"] == "right"
    assert graded[("heidi", "01.layer_biases")]["result"] == "right"


def test_a_notebook_without_outputs_runs_and_a_huge_number_is_simply_wrong(graded):
    assert graded[("ivan", "01.layer_biases")]["result"] == "wrong"
    assert graded[("ivan", "01.b_k")]["result"] == "not attempted"


def test_a_symlinked_notebook_and_an_empty_folder_each_get_a_row_that_says_why(graded):
    assert graded[("judy", "01.b_k")]["result"] == "not graded" and "symbolic link" in graded[("judy", "01.b_k")]["why"]
    assert graded[("mallory", "")]["result"] == "not graded" and "no notebook" in graded[("mallory", "")]["why"]


def test_a_recorder_line_that_is_not_json_records_nothing():
    token = "#grade-0123#"
    executed = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("")])
    executed.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text=(
        f"{token}not json at all\n{token}" + '{"key": "01.b_k", "answer": "b"}\n'))]
    assert grading._recorded(executed, token) == {"01.b_k": "b"}


def test_an_answer_that_makes_the_check_fail_is_not_graded_not_a_crash(monkeypatch):
    def explode(exercise, given):
        raise RuntimeError("boom")

    monkeypatch.setattr(type(EXERCISES["01.b_k"]), "failure", explode)
    assert grading._judge("01.b_k", "b")[0] == "not graded"


def test_an_answer_left_as_none_is_not_attempted(graded):
    row = graded[("bob", "01.layer_biases")]
    assert row["result"] == "not attempted" and "None" in row["why"]


def test_a_file_that_does_not_parse_is_a_row_that_says_so(graded):
    assert {graded[("carol", key)]["result"] for key in ("01.b_k", "01.layer_biases")} == {"not graded"}
    assert "does not parse" in graded[("carol", "01.b_k")]["why"]


def test_a_loop_that_never_ends_stops_at_the_time_limit_and_keeps_what_ran_before(graded):
    assert graded[("dave", "01.b_k")]["result"] == "right"
    row = graded[("dave", "01.layer_biases")]
    assert row["result"] == "not graded" and "time limit of 40 s" in row["why"]


def test_raising_spoofing_and_overriding_the_checker_do_not_fool_the_grader(graded):
    assert graded[("eve", "01.b_k")]["result"] == "wrong" and "ZeroDivisionError" in graded[("eve", "01.b_k")]["why"]
    row = graded[("eve", "01.layer_biases")]
    assert row["result"] == "wrong" and "5" in row["why"], "judged from the answer given, not from printed lines"


def test_a_kernel_that_dies_is_a_row_and_the_others_are_still_graded(graded):
    assert graded[("frank", "01.b_k")]["result"] == "right"
    assert graded[("frank", "01.layer_biases")]["result"] == "not graded"
    assert graded[("grace", "01.b_k")]["result"] == "wrong" and "SyntaxError" in graded[("grace", "01.b_k")]["why"]


def test_grading_a_folder_without_students_says_what_to_do(tmp_path, capsys):
    assert cli.main(["classroom", "grade", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "holds no student folders" in error and "<student>/" in error and "Traceback" not in error
