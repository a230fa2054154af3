"""bf16 autocast only where the hardware has bfloat16 kernels: live runs fall back to fp32, and a run
that asks for bf16 on hardware without them stops before it starts, with what to do."""

import pytest

from bitfit_edu import precision
from bitfit_edu.cli import main
from bitfit_edu.errors import BitFitError
from bitfit_edu.profiles import get_profile
from bitfit_edu.training import RunConfig, run


@pytest.fixture
def without_bf16_kernels(monkeypatch):
    monkeypatch.setattr(precision, "native_bf16", lambda: False)


@pytest.mark.parametrize("kernels", [True, False])
def test_demo_runs_use_the_profiles_bf16_only_with_bf16_kernels(kernels, monkeypatch):
    monkeypatch.setattr(precision, "native_bf16", lambda: kernels)
    classroom = get_profile("classroom")
    demo = RunConfig.for_demo(classroom, "mrpc", "bitfit")
    assert (demo.bf16, demo.train_size, demo.epochs) == (kernels, classroom.demo_train_size, classroom.demo_epochs)
    assert demo.number_format == ("bf16 autocast" if kernels else "fp32")
    assert RunConfig.for_demo(classroom, "mrpc", "bitfit", learning_rate=2e-5).learning_rate == 2e-5
    assert not RunConfig.for_demo(get_profile("smoke"), "mrpc", "bitfit").bf16  # smoke never asks for bf16


def test_bf16_run_without_kernels_stops_before_loading_anything(without_bf16_kernels, tmp_path):
    config = RunConfig(model=str(tmp_path / "no-model-here"), task="rte", method="bitfit", bf16=True)
    with pytest.raises(BitFitError, match=r"has no bfloat16 kernels.*--no-bf16"):
        run(config, glue_dir=tmp_path / "no-glue-here")  # neither is looked at: the check comes first


def test_grid_in_bf16_without_kernels_is_one_error_and_writes_nothing(without_bf16_kernels, capsys, tmp_path):
    grid = ["grid", "--profile", "classroom", "--experiment", "ablation", "--tasks", "rte", "--results", str(tmp_path)]
    assert main(grid) == 2
    err = capsys.readouterr().err
    assert "error: run rte_bitfit-b_q-b_m2_" in err and "no bfloat16 kernels" in err and "Traceback" not in err
    assert not any(tmp_path.rglob("*.json"))


def test_grid_no_bf16_is_another_set_of_configurations(capsys, tmp_path):
    grid = ["grid", "--profile", "classroom", "--experiment", "ablation", "--tasks", "rte", "--seeds", "0",
            "--results", str(tmp_path), "--dry-run"]
    listed = {}
    for option in ("--bf16", "--no-bf16"):
        assert main([*grid, option]) == 0
        listed[option] = [line.split()[2:] for line in capsys.readouterr().out.splitlines() if "to run:" in line]
    assert all(line[-2:] == ["bf16", "autocast)"] for line in listed["--bf16"])
    assert all(line[-1] == "fp32)" for line in listed["--no-bf16"])
    assert not {line[0] for line in listed["--bf16"]} & {line[0] for line in listed["--no-bf16"]}
