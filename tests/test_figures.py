"""Every figure carries alt text written from the data it plots, and shows it where readers see the figure."""

import re

import pandas as pd
import pytest
from synthetic_records import record

from bitfit_edu.data import locations
from bitfit_edu.evidence import plots, power
from bitfit_edu.evidence.claims import MAIN_CLAIMS


@pytest.fixture()
def checkout(tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text("")
    monkeypatch.setattr(locations, "CHECKOUT", tmp_path)  # the course figures are saved in
    monkeypatch.chdir(tmp_path)
    return tmp_path


def bars() -> plots.Chart:
    means = pd.DataFrame({"rte": [61.25, 58.5], "avg": [70.0, 68.0]}, index=["full", "bitfit"])
    return plots.method_bars(means, means * 0, "ours", paper_average={"full": 82.3, "bitfit": 82.4},
                             floors={"rte": 52.7})


def test_method_bars_alt_text_reads_every_bar_the_floor_and_the_papers_panel():
    alt = bars().alt
    assert "Full-FT: rte 61.2, avg 70.0; BitFit: rte 58.5, avg 68.0" in alt
    assert "majority class: rte 52.7" in alt
    assert "the paper's BERT-base GLUE dev averages: Full-FT 82.3, BitFit 82.4" in alt
    assert "bitfit" not in alt.replace("BitFit", ""), "readable method names only"


def test_alt_text_follows_the_data():
    changed = pd.DataFrame({"rte": [40.0, 58.5], "avg": [70.0, 68.0]}, index=["full", "bitfit"])
    assert "Full-FT: rte 40.0" in plots.method_bars(changed, changed * 0, "ours").alt


def test_every_kind_of_figure_has_alt_text_with_its_numbers():
    curves = [record("bitfit", s, 1e-3, [0.5, 0.6 + s / 10]) for s in range(2)]
    sizes = pd.DataFrame({"full": [50.0, 80.0], "bitfit": [55.0, 75.0]}, index=[100, 10000])
    heat = pd.DataFrame([[1e-3, 2e-3, 1.5e-3], [4e-3, 1e-3, 2.5e-3]], index=["b_q", "b_m2"], columns=[0, 1, "avg"])
    claim = MAIN_CLAIMS[0]
    curve = power.probability_curve(claim, 0.0, 1.0, 1.0, [2, 5])
    charts = {
        "kinds": plots.parameter_kinds_figure({"weights W": 999, "biases b": 1}, "model"),
        "curves": plots.learning_curves({"BitFit": curves[0]}, "run"),
        "heat": plots.bias_change_heatmap(heat, "Figure 1"),
        "seeds": plots.learning_curves_over_seeds(curves, "seeds"),
        "sizes": plots.size_curve_figure(sizes, sizes * 0, "size", [1000.0]),
        "power": plots.verdict_probability_figure({"gap 0": curve}, "power", seeds_now=5),
        "latency": plots.latency_figure([10.0] * 98 + [50.0, 90.0], "service"),
        "multitask": plots.multitask_throughput_figure(
            [{"tasks": n, "one-task batch rows/s": 100.0, "BitFit mixed rows/s": 98.0, "LoRA mixed rows/s": 100 / n}
             for n in (1, 4)], "mixed"),
    }
    expected = {"kinds": "biases b 1 (0.1%)", "curves": "dev 50.0, 60.0", "heat": "Largest cell: b_m2 at 0, 0.004",
                "seeds": "BitFit 50.0 at epoch 1, 65.0 at epoch 2", "sizes": "cross near 1,000",
                "power": "at 5 seeds holds", "latency": "100 requests, latency from 10 to 90 ms; percentiles p50 10 ms",
                "multitask": "BitFit, mixed batch: 1 tasks 0.98, 4 tasks 0.98; LoRA r=8"}
    for name, chart in charts.items():
        assert expected[name] in chart.alt, (name, chart.alt)


def test_show_saves_the_png_and_its_alt_text_and_displays_an_image_with_alt(checkout, capsys):
    chart = bars()
    chart.show("main_table")
    assert "results/figures" not in capsys.readouterr().out, "the path is for the course, not the reader"
    assert (checkout / "results/figures/main_table.png").read_bytes()[:4] == b"\x89PNG"
    assert (checkout / "results/figures/main_table.alt.txt").read_text() == chart.alt + "\n"
    assert (checkout / "results/figures/main_table.title.txt").read_text().strip() == chart.title != ""
    assert plots.alt_texts() == {"main_table": chart.alt}
    bundle = chart._repr_mimebundle_()
    assert set(bundle) == {"text/html", "text/plain"} and bundle["text/plain"] == chart.alt
    (alt,) = re.findall(r'<img src="data:image/png;base64,[^"]+" alt="([^"]+)"/>', bundle["text/html"])
    assert alt == chart.alt.replace("'", "&#x27;")


def test_saving_a_second_figure_keeps_the_first_ones_alt_text(checkout):
    bars().save("first")
    bars().save("second")
    assert set(plots.alt_texts()) == {"first", "second"}


def test_the_decision_rule_figure_draws_each_interval_with_its_verdict():
    from bitfit_edu.evidence.plots import decision_rule_figure

    chart = decision_rule_figure({"a": (-0.5, 0.5), "b": (-3.0, -2.0)}, 1.0,
                                 {"a": "holds", "b": "does not hold"}, "rule")
    assert "a: [-0.50, +0.50], holds; b: [-3.00, -2.00], does not hold" in chart.alt
    assert "from -1 to 1" in chart.alt and len(chart.figure.axes[0].lines) >= 4
    chart.figure.clf()


def test_the_encoder_layer_diagram_names_all_eight_biases():
    from bitfit_edu.evidence.plots import encoder_layer_diagram

    chart = encoder_layer_diagram("layer")
    for bias in ("b_q", "b_k", "b_v", "b_m1", "b_LN1", "b_m2", "b_m3", "b_LN2"):
        assert bias in chart.alt
    assert "W^O" in chart.alt
    chart.figure.clf()
