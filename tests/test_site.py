"""The course site's measured parts, and alt text for every figure the notebooks show."""

import json
import re
import sys

import pytest

from bitfit_edu.classroom import course
from bitfit_edu.classroom.exercises import EXERCISES
from bitfit_edu.data.locations import repo_root
from bitfit_edu.evidence import plots

ROOT = repo_root()
sys.path.insert(0, str(ROOT / "site"))
pages = pytest.importorskip("pages")


def notebooks():
    return sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_every_notebook_is_a_chapter_of_the_course_once():
    assert [chapter.stem for chapter in course.CHAPTERS] == [path.stem for path in notebooks()]


def test_the_course_map_gives_each_notebook_its_measured_time():
    rows = [line for line in pages.course_map().splitlines() if "</notebooks/" in line]
    assert len(rows) == len(course.CHAPTERS)
    assert all(re.search(r"\| \d+(\.\d)? (s|min) \|", row) for row in rows), rows


def test_measured_seconds_read_the_cell_timestamps(tmp_path):
    cell = {"cell_type": "code", "metadata": {"execution": {"iopub.execute_input": "2026-12-03T10:00:00.0Z",
                                                            "shell.execute_reply": "2026-12-03T10:01:30.5Z"}}}
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps({"cells": [cell]}))
    assert course.measured_seconds(path) == 90.5
    path.write_text(json.dumps({"cells": [{"cell_type": "code", "metadata": {}}]}))
    assert course.measured_seconds(path) is None


def test_the_instructor_guide_covers_every_notebook_and_every_exercise():
    guide = pages.instructor_chapters()
    assert len(re.findall(r"^## \d\d: ", guide, flags=re.M)) == len(course.CHAPTERS)
    assert all(f"`{key}`" in guide for key in EXERCISES)
    assert guide.count("**Discussion questions.**") == len(course.CHAPTERS)
    assert "CPU core-hours" in guide and "GPU process-hours" in guide  # notebook 08's runs were on a GPU


def test_the_results_page_gathers_the_verdicts_of_notebooks_03_04_05_08_and_09():
    verdicts = pages.verdicts()
    numbers = {number for number in re.findall(r"^### Notebook (\d\d)", verdicts, flags=re.M)}
    assert numbers == {"03", "04", "05", "08", "09"}
    assert "**holds**" in verdicts or "**does not hold**" in verdicts


def test_every_figure_a_notebook_shows_is_an_image_with_alt_text():
    for path in notebooks():
        for cell in json.loads(path.read_text())["cells"]:
            for output in cell.get("outputs", []):
                data = output.get("data", {})
                assert "image/png" not in data, f"{path.name}: a figure without alt text (use Chart.show)"
                for image in re.findall(r"<img [^>]*>", "".join(data.get("text/html", ""))):
                    alt = re.search(r'alt="([^"]*)"', image)
                    assert alt and len(alt.group(1)) > 40, f"{path.name}: {image[:80]}"


def test_every_committed_figure_has_alt_text():
    texts = plots.alt_texts()
    committed = {p.stem for p in (ROOT / "results" / "figures").glob("*.png") if not p.stem.endswith("_smoke")}
    assert committed <= set(texts), committed - set(texts)


def test_the_results_page_heads_each_figure_briefly_with_its_own_title_beneath():
    page = pages.figures()
    headings = [line[4:] for line in page.splitlines() if line.startswith("### ")]
    assert headings and max(map(len, headings)) <= 40  # the page's table of contents stays one line an entry
    for name in ("ablation_table", "main_table"):
        title = (ROOT / "results" / "figures" / f"{name}{plots.TITLE_SUFFIX}").read_text().strip()
        assert f"### {name.replace('_', ' ').capitalize()}\n\n*{title}*" in page


def test_every_discussion_question_has_a_model_answer_in_the_instructor_guide():
    guide = pages.instructor_chapters()
    for chapter in course.CHAPTERS:
        assert len(chapter.answers) == len(chapter.questions) > 0, chapter.stem
        assert all(answer in guide for answer in chapter.answers)
    assert guide.count("*A model answer:*") == sum(len(chapter.questions) for chapter in course.CHAPTERS)
