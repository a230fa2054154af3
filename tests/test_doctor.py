"""`python -m bitfit_edu doctor`: one line per item, OK or FAIL with the fix, and a non-zero exit on FAIL."""

import json

import pytest

from bitfit_edu import cli
from bitfit_edu.classroom import doctor
from bitfit_edu.data import locations


def test_pins_read_exact_versions_and_skip_options_and_comments(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# the stack\n--extra-index-url https://x\ntorch==2.13.0  # cpu\nPandas==3.1.1\nscipy\n"
                            "uvloop==0.23.0; sys_platform != 'win32'\n")
    assert doctor.pins(requirements) == {"torch": "2.13.0", "pandas": "3.1.1", "uvloop": "0.23.0"}


def test_package_versions_name_a_missing_and_a_wrong_package(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("pytest==0.0.1\nno-such-package-bitfit==1.0\n")
    finding = doctor.package_versions(requirements)
    assert not finding.ok and "pytest" in finding.found and "no-such-package-bitfit missing" in finding.found
    assert "FAIL" in finding.line() and "fix: make install" in finding.line()


def test_package_versions_ok_when_the_pins_match(tmp_path):
    from importlib import metadata

    requirements = tmp_path / "requirements.txt"
    requirements.write_text(f"pytest=={metadata.version('pytest')}\n")
    assert doctor.package_versions(requirements).ok


def offline_folder(root, with_task=True):
    (root / "hf-hub").mkdir(parents=True)
    task = root / "glue_data" / "SST-2"
    task.mkdir(parents=True)
    if with_task:
        (task / "train.tsv").write_text("sentence\tlabel\n")
        (task / "dev.tsv").write_text("sentence\tlabel\n")
    return root


def test_data_missing_files_say_what_a_glue_folder_holds(tmp_path, monkeypatch):
    monkeypatch.setenv("BITFIT_EDU_DATA", str(offline_folder(tmp_path, with_task=False)))
    monkeypatch.delenv("GLUE_DIR", raising=False)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    data, model = doctor.data_and_model("sentence-transformers/all-MiniLM-L6-v2", "SST-2", reachable=lambda: False)
    assert not data.ok and "SST-2/train.tsv" in data.fix
    assert not model.ok and "not in" in model.found


def test_without_an_offline_folder_the_hub_decides(tmp_path, monkeypatch):
    monkeypatch.setenv("BITFIT_EDU_DATA", str(tmp_path))  # an empty folder: neither glue_data nor hf-hub
    monkeypatch.delenv("GLUE_DIR", raising=False)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    offline = doctor.data_and_model("m", "SST-2", reachable=lambda: False)
    assert [f.ok for f in offline] == [False, False] and "BITFIT_EDU_DATA" in offline[0].fix
    assert all(f.ok for f in doctor.data_and_model("m", "SST-2", reachable=lambda: True))


def test_free_memory_fails_below_what_the_largest_notebook_needs(monkeypatch):
    monkeypatch.setattr(doctor, "available_memory_mb", lambda: 900.0)
    assert not doctor.free_memory().ok
    monkeypatch.setattr(doctor, "available_memory_mb", lambda: 8000.0)
    assert doctor.free_memory().ok


def test_demo_estimate_scales_timed_steps_by_the_benchmark(tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text("")
    benchmarks = tmp_path / "results" / "benchmarks"
    benchmarks.mkdir(parents=True)
    runs = {m: {"wall_seconds": 20.0, "train_seconds": 10.0} for m in ("full", "bitfit", "frozen")}
    for number_format in ("fp32", "bf16"):
        (benchmarks / f"demo_{number_format}.json").write_text(json.dumps(
            {"wall_seconds": 70.0, "target_seconds": 300, "device": "CPU", "runs": runs}))
    monkeypatch.setattr(locations, "CHECKOUT", tmp_path)  # the course the package is installed from
    monkeypatch.setattr("bitfit_edu.core.readout.load_classifier", lambda *a, **k: None)
    monkeypatch.setattr("bitfit_edu.deploy.costs.step_seconds",
                        lambda model, method, batches, steps, number_format: [0.5] * steps)
    finding = doctor.demo_estimate()
    # 96 demo steps (1,000 examples / 32, 3 epochs) x 0.5 s x (20 / 10), per method, + 10 s outside the runs
    assert finding.ok and "about 5.0 min" in finding.found  # 298 s


def test_doctor_command_prints_one_line_per_item_and_exits_1_on_a_fail(monkeypatch, capsys):
    monkeypatch.setattr(doctor, "findings", lambda: [doctor.Finding("Python", True, "3.11"),
                                                     doctor.Finding("model", False, "missing", "copy it")])
    assert cli.main(["doctor"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("OK    Python") and out[1].startswith("FAIL  model") and "fix: copy it" in out[2]
    monkeypatch.setattr(doctor, "findings", lambda: [doctor.Finding("Python", True, "3.11")])
    assert cli.main(["doctor"]) == 0


@pytest.mark.parametrize("available", [None])
def test_unknown_memory_is_not_a_failure(monkeypatch, available):
    monkeypatch.setattr(doctor, "available_memory_mb", lambda: available)
    assert doctor.free_memory().ok


def test_a_data_setting_that_names_no_folder_is_a_fail_line_not_an_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BITFIT_EDU_DATA", str(tmp_path / "nowhere"))
    assert cli_doctor() == 1
    out = capsys.readouterr().out
    assert "FAIL  GLUE data and model" in out and "BITFIT_EDU_DATA=" in out and "FAIL  demo time" in out


def test_a_broken_torch_is_a_fail_line_and_nothing_else_is_tried(monkeypatch, capsys):
    import builtins

    real_import = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name == "torch":
            raise ImportError("libtorch.so: cannot open shared object file")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    found = doctor.findings()
    assert [f.item for f in found][-2:] == ["torch", "the rest"] and not found[-2].ok
    assert "libtorch.so" in found[-2].found and "make install" in found[-2].fix


def test_doctor_runs_before_the_command_line_imports_torch():
    import subprocess
    import sys

    script = ("import sys, runpy; sys.argv = ['bitfit_edu', 'doctor']; sys.modules['torch'] = None\n"
              "try:\n    runpy.run_module('bitfit_edu', run_name='__main__')\nexcept SystemExit as end:\n"
              "    print('exit', end.code)")
    found = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert "FAIL  torch" in found.stdout and "exit 1" in found.stdout, found.stderr[-400:]


def cli_doctor() -> int:
    return doctor.run()
