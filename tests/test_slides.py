"""The teacher's slides: a deck per notebook from its tagged cells, objectives first and discussion last."""

from bitfit_edu.classroom import course, slides


def test_a_deck_opens_with_the_objectives_shows_the_tagged_figure_and_ends_with_discussion():
    chapter = course.chapter("03_glue_runs")
    deck = slides.deck(chapter)
    assert deck.cells[0].cell_type == "markdown" and chapter.objectives[0] in deck.cells[0].source
    figures = [cell for cell in deck.cells if cell.cell_type == "code" and any(map(slides._is_figure, cell.outputs))]
    assert len(figures) >= 2 and all(len(cell.outputs) == 1 for cell in figures), "the figure alone"
    assert 'alt="' in "".join(figures[0].outputs[0]["data"]["text/html"]), "with its alt text"
    assert any("Takeaways" in cell.source for cell in deck.cells)
    assert deck.cells[-1].source.startswith("## Discussion") and chapter.questions[0] in deck.cells[-1].source
    assert all(cell.metadata["slideshow"]["slide_type"] in ("slide", "-") for cell in deck.cells)


def test_every_notebook_has_slides_that_load_their_scripts_from_the_site(tmp_path):
    for name in slides.SCRIPTS:  # as if npm had fetched them already: no network in the tests
        (tmp_path / slides.VENDOR / name).mkdir(parents=True)
        (tmp_path / slides.VENDOR / name / "package.json").write_text("{}")
    written = slides.write_decks(tmp_path)
    assert [path.name for path in written] == [f"{c.stem}.slides.html" for c in course.CHAPTERS]
    for chapter, path in zip(course.CHAPTERS, written, strict=True):
        html = path.read_text()
        assert chapter.title in html and 'src="vendor/requirejs/require.js"' in html
        assert '"vendor/reveal.js/dist/reveal.js"' in html and "unpkg.com/reveal.js" not in html
    for chapter in course.CHAPTERS:
        assert len(slides.deck(chapter).cells) >= 4, f"{chapter.stem}: tag a figure or a verdict with 'slides'"
