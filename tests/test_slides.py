"""The teacher's slides: a deck per notebook from its tagged cells, objectives first and discussion last."""

from bitfit_edu.classroom import course, offline, slides


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


def test_every_notebook_has_slides_that_load_their_scripts_and_mathjax_from_the_site(tmp_path):
    vendor = tmp_path / "vendor"
    for name in offline.PACKAGES:  # as if npm had fetched them already: no network in the tests
        (vendor / name).mkdir(parents=True)
        (vendor / name / ".fetched").write_text(name)
    written = slides.write_decks(tmp_path / "slides", vendor)
    assert [path.name for path in written] == [f"{c.stem}.slides.html" for c in course.CHAPTERS]
    for chapter, path in zip(course.CHAPTERS, written, strict=True):
        html = path.read_text()
        assert chapter.title in html and 'src="../vendor/requirejs/require.js"' in html
        assert '"../vendor/reveal.js/dist/reveal.js"' in html and "unpkg.com/reveal.js" not in html
        assert 'src="../vendor/mathjax/es5/tex-svg-full.js"' in html and "cdnjs" not in html
        assert "inlineMath: [['$', '$']" in html
    for chapter in course.CHAPTERS:
        assert len(slides.deck(chapter).cells) >= 4, f"{chapter.stem}: tag a figure or a verdict with 'slides'"


def test_offline_keeps_only_the_files_a_page_loads(tmp_path):
    package = tmp_path / "mathjax"
    for name in ("es5/tex-svg-full.js", "es5/tex-chtml.js", "es5/output/chtml/fonts/x.woff", "package.json"):
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text("x")
    offline._kept(package, offline.PACKAGES["mathjax"][1])
    assert sorted(p.relative_to(package).as_posix() for p in package.rglob("*") if p.is_file()) == \
        ["es5/tex-svg-full.js"]
