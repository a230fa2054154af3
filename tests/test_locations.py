"""Where data and models come from: one offline folder, resolved to absolute paths from any directory."""

from pathlib import Path

import pytest

from bitfit_edu.data import locations
from bitfit_edu.data.glue import load_split
from bitfit_edu.errors import BitFitError


@pytest.fixture
def data_home(tmp_path, glue_dir) -> Path:
    """An offline data folder as BITFIT_EDU_DATA describes it: glue_data/ and hf-hub/."""
    home = tmp_path / "data"
    home.mkdir()
    glue_dir.rename(home / "glue_data")
    (home / "hf-hub").mkdir()
    return home


@pytest.fixture(autouse=True)
def _no_ambient_locations(monkeypatch):
    for variable in ("BITFIT_EDU_DATA", "HF_HUB_CACHE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(variable, raising=False)


def test_the_data_folder_serves_glue_and_models_from_any_directory(data_home, tmp_path, monkeypatch):
    monkeypatch.setenv("BITFIT_EDU_DATA", str(data_home))
    monkeypatch.chdir(tmp_path / "data" / "glue_data")  # like a notebook kernel, somewhere else
    assert locations.glue_dir() == data_home / "glue_data"
    assert locations.hub_options() == {"cache_dir": str(data_home / "hf-hub"), "local_files_only": True}
    assert len(load_split("rte", "train")) == 24


def test_a_relative_setting_is_resolved_where_it_is_read(data_home, monkeypatch):
    monkeypatch.chdir(data_home.parent)
    monkeypatch.setenv("GLUE_DIR", "data/glue_data")
    monkeypatch.setenv("HF_HUB_CACHE", "data/hf-hub")
    assert locations.glue_dir() == data_home / "glue_data"
    assert locations.hub_options() == {"cache_dir": str(data_home / "hf-hub"), "local_files_only": False}
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert locations.hub_options()["local_files_only"] is True


@pytest.mark.parametrize("variable", ["GLUE_DIR", "HF_HUB_CACHE", "BITFIT_EDU_DATA"])
def test_a_path_that_names_no_folder_is_one_clear_error(variable, data_home, monkeypatch):
    monkeypatch.chdir(data_home)  # ../shared/... from here points nowhere, as from notebooks/
    monkeypatch.setenv(variable, "../shared/somewhere")
    with pytest.raises(BitFitError, match=rf"{variable}=../shared/somewhere is not a folder seen from "
                                          r".*notebook's kernel runs in notebooks/\). Set it to an absolute path"):
        locations.glue_dir() if variable == "GLUE_DIR" else locations.hub_options()


def test_a_missing_glue_dir_stops_before_any_hub_download(tmp_path, monkeypatch):
    monkeypatch.setenv("GLUE_DIR", str(tmp_path / "nothing"))
    with pytest.raises(BitFitError, match="GLUE_DIR=.*nothing is not a folder"):
        load_split("rte", "train")


def test_shared_beside_the_checkout_is_the_default(tmp_path, monkeypatch):
    checkout = tmp_path / "clone"
    (checkout / "notebooks").mkdir(parents=True)
    (checkout / "pyproject.toml").write_text("")
    monkeypatch.setattr(locations, "CHECKOUT", tmp_path / "site-packages")  # a non-editable install
    monkeypatch.chdir(checkout / "notebooks")
    assert locations.data_home() is None
    (tmp_path / "shared" / "glue_data").mkdir(parents=True)
    assert locations.data_home() == tmp_path / "shared"
    assert locations.glue_dir() == tmp_path / "shared" / "glue_data"
    assert locations.hub_cache() is None  # no hf-hub there: models come from the hub


def test_results_come_from_the_installed_course_wherever_the_working_directory_is(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a teacher's own folder, or a student build's notebooks
    assert locations.results_folder("benchmarks") == locations.CHECKOUT / "results" / "benchmarks"
    course = tmp_path / "course"
    (course / "results").mkdir(parents=True)
    (course / "pyproject.toml").write_text("")
    monkeypatch.setattr(locations, "CHECKOUT", tmp_path / "site-packages")  # a plain install
    monkeypatch.chdir(course / "results")
    assert locations.results_folder() == course / "results"
