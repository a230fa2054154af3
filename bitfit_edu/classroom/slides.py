"""Slides for the teacher: each notebook's key moments as a reveal.js deck (``jupyter nbconvert --to slides``).

A deck is made from the committed, executed notebook, and nothing is re-run. It holds, in order: a title
slide with what the notebook teaches and its learning objectives (``course.CHAPTERS``); every cell tagged
``slides`` (the key figure or two, a verdict), its figure alone where it draws one, else its outputs; the
notebook's takeaways; and its discussion questions. ``make site`` writes the decks beside the site's pages,
and the instructor guide links them. The scripts a deck runs on (reveal.js, require.js, jQuery, MathJax) are
the site's own (``offline``), so the slides work in a classroom without internet.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import nbformat

from . import offline
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


# The deck's template: nbconvert's reveal.js, with MathJax 3 (the site's own copy) reading $...$ as math, and
# without the diagram library it would import from a CDN (no deck draws a diagram)
TEMPLATE = """{%- extends 'reveal/index.html.j2' -%}
{%- block html_head_js_mathjax -%}
<script>window.MathJax = {tex: {inlineMath: [['$', '$'], ['\\\\(', '\\\\)']], processEscapes: true}};</script>
<script src="{{ resources.mathjax_url }}"></script>
{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""


def _template(folder: Path) -> str:
    """Write the deck's template into ``folder`` and return its name."""
    (folder / "bitfit_slides").mkdir(parents=True, exist_ok=True)
    (folder / "bitfit_slides" / "conf.json").write_text('{"base_template": "reveal", "mimetypes": {"text/html": true}}')
    (folder / "bitfit_slides" / "index.html.j2").write_text(TEMPLATE)
    return "bitfit_slides"


def write_decks(out: Path, vendor: Path) -> list[Path]:
    """Write every notebook's deck to ``out/<stem>.slides.html``, running on the scripts in ``vendor``
    (``offline.fetch``) where npm can fetch them, else on a CDN's."""
    from nbconvert import SlidesExporter
    from traitlets.config import Config

    config = Config()
    config.TagRemovePreprocessor.remove_input_tags = {HIDE_INPUT}
    config.TagRemovePreprocessor.enabled = True
    config.SlidesExporter.mathjax_url = "https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-svg-full.js"
    config.SlidesExporter.reveal_theme = "white"  # its fonts ship with reveal.js; the default theme's come from Google
    if offline.fetch(vendor):
        prefix = Path(os.path.relpath(vendor, out)).as_posix()
        config.SlidesExporter.reveal_url_prefix = f"{prefix}/{offline.REVEAL}"
        config.SlidesExporter.require_js_url = f"{prefix}/{offline.REQUIRE}"
        config.SlidesExporter.jquery_url = f"{prefix}/{offline.JQUERY}"
        config.SlidesExporter.mathjax_url = f"{prefix}/{offline.MATHJAX}"
        config.SlidesExporter.widget_renderer_url = f"{prefix}/{offline.WIDGETS}"
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory() as templates:
        exporter = SlidesExporter(config=config, exclude_input_prompt=True, exclude_output_prompt=True,
                                  extra_template_basedirs=[templates], template_name=_template(Path(templates)))
        for chapter in CHAPTERS:
            body, _ = exporter.from_notebook_node(deck(chapter))
            path = out / f"{chapter.stem}.slides.html"
            path.write_text(body, encoding="utf-8")
            written.append(path)
    return written
