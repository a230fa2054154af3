"""Slides for the teacher: each notebook's key moments as a reveal.js deck (``jupyter nbconvert --to slides``).

A deck is made from the committed, executed notebook, and nothing is re-run. It holds, in order: a title
slide with what the notebook teaches and its learning objectives (``course.CHAPTERS``); every cell tagged
``slides`` (the key figure or two, a verdict), its figure alone where it draws one, else its outputs; the
notebook's takeaways; and its discussion questions. ``make site`` writes the decks beside the site's pages,
and the instructor guide links them. The scripts a deck runs on (reveal.js, require.js, jQuery) are fetched
from the npm registry into the site, so the slides work in a classroom without internet.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import nbformat

from .course import CHAPTERS, Chapter

SLIDE_TAG = "slides"
HIDE_INPUT = "remove-input"  # a cell whose source the deck leaves out (its outputs are the slide)


def _markdown(text: str):
    cell = nbformat.v4.new_markdown_cell(text)
    cell.metadata["slideshow"] = {"slide_type": "slide"}
    return cell


TAKEAWAYS = re.compile(r"(?im)^#+\s*(key )?takeaways")


def _takeaways(cells: list) -> list:
    """The cells of the section headed "Takeaways", from its heading to the next one."""
    found = []
    for cell in cells:
        markdown = cell.cell_type == "markdown"
        if markdown and not found and (start := TAKEAWAYS.search(cell.source)):
            heading = nbformat.from_dict(dict(cell))
            heading.source = cell.source[start.start():]
            found.append(heading)
        elif found and markdown and re.search(r"(?m)^#+\s", cell.source):
            break
        elif found:
            found.append(cell)
    return found


def _is_figure(output) -> bool:
    """A figure as ``plots.Chart`` displays it: an <img> with its alt text, or a plain PNG."""
    data = output.get("data", {})
    return "image/png" in data or "".join(data.get("text/html", "")).lstrip().startswith("<img")


def deck(chapter: Chapter):
    """The slides of one notebook, as a notebook whose every cell is a slide."""
    notebook = nbformat.read(chapter.notebook, as_version=4)
    objectives = "\n".join(f"- {objective}" for objective in chapter.objectives)
    slides = [_markdown(f"# {chapter.number}. {chapter.title}\n\nIt teaches {chapter.teaches}.\n\n"
                        f"**You will be able to**\n\n{objectives}")]
    for cell in notebook.cells:
        if SLIDE_TAG in cell.metadata.get("tags", []):
            shown = nbformat.from_dict(dict(cell))
            shown.metadata = {"slideshow": {"slide_type": "slide"}, "tags": [HIDE_INPUT]}
            figures = [output for output in shown.get("outputs", []) if _is_figure(output)]
            shown.outputs = figures or shown.get("outputs", [])  # a figure alone, when the cell draws one
            slides.append(shown)
    takeaways = _takeaways(notebook.cells)
    for index, cell in enumerate(takeaways):
        shown = nbformat.from_dict(dict(cell))
        shown.metadata = {"slideshow": {"slide_type": "slide" if index == 0 else "-"}, "tags": [HIDE_INPUT]}
        slides.append(shown)
    questions = "\n".join(f"{index}. {question}" for index, question in enumerate(chapter.questions, 1))
    slides.append(_markdown(f"## Discussion\n\n{questions}"))
    notebook.cells = slides
    return notebook


# The scripts a deck runs on, from the npm registry: nbconvert's reveal.js, and a require.js and jQuery it works with
SCRIPTS = {"reveal.js": "reveal.js@4.0.2", "requirejs": "requirejs@2.3.6", "jquery": "jquery@2.2.4"}
VENDOR = "vendor"  # the folder beside the decks that holds them


def fetch_scripts(folder: Path) -> bool:
    """Put reveal.js, require.js and jQuery in ``folder`` (``npm pack``, once), so that the decks run with no
    network. False, with the reason printed, when npm cannot fetch them: the decks then load them from a CDN."""
    if all((folder / name / "package.json").is_file() for name in SCRIPTS):
        return True
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        try:
            subprocess.run(["npm", "pack", "--silent", *SCRIPTS.values()], cwd=scratch, check=True,
                           capture_output=True, timeout=300)
        except (OSError, subprocess.SubprocessError) as error:
            print(f"slides: could not fetch {', '.join(SCRIPTS.values())} with npm ({error}); the decks will load "
                  "them from a CDN and need a network to run as slides")
            return False
        for name in SCRIPTS:
            archive = next(Path(scratch).glob(f"{name}-*.tgz"))
            with tarfile.open(archive) as packed:
                packed.extractall(scratch, filter="data")
            shutil.rmtree(folder / name, ignore_errors=True)
            shutil.move(Path(scratch) / "package", folder / name)
    return True


def write_decks(out: Path) -> list[Path]:
    """Write every notebook's deck to ``out/<stem>.slides.html``, with its scripts in ``out/vendor`` where npm
    can fetch them."""
    from nbconvert import SlidesExporter
    from traitlets.config import Config

    config = Config()
    config.TagRemovePreprocessor.remove_input_tags = {HIDE_INPUT}
    config.TagRemovePreprocessor.enabled = True
    if fetch_scripts(out / VENDOR):
        config.SlidesExporter.reveal_url_prefix = f"{VENDOR}/reveal.js"
        config.SlidesExporter.require_js_url = f"{VENDOR}/requirejs/require.js"
        config.SlidesExporter.jquery_url = f"{VENDOR}/jquery/dist/jquery.min.js"
    exporter = SlidesExporter(config=config, exclude_input_prompt=True, exclude_output_prompt=True)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for chapter in CHAPTERS:
        body, _ = exporter.from_notebook_node(deck(chapter))
        path = out / f"{chapter.stem}.slides.html"
        path.write_text(body, encoding="utf-8")
        written.append(path)
    return written
