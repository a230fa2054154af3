"""The command line: the accounting table, and bad input as one clear message with a non-zero exit."""

import re
import subprocess
import sys

import pytest

from bitfit_edu.cli import main


def test_params_prints_the_papers_bert_base_figures(capsys):
    assert main(["params", "--model", "bert-base-cased"]) == 0
    out = capsys.readouterr().out
    assert "102,912 bias parameters of 108,310,272 = 0.095%" in out
    assert "truncated 0.09%; the paper prints 0.09%" in out


def test_census_prints_groups_by_layer(capsys):
    assert main(["census", "--model", "bert-base-cased"]) == 0
    out = capsys.readouterr().out
    assert "b_m2" in out and "3072" in out and "102912" in out


@pytest.mark.parametrize("argv,message", [
    (["run", "--task", "squad", "--method", "bitfit"], "unknown GLUE task 'squad'"),
    (["run", "--task", "rte", "--method", "lora"], "unknown method variant 'lora'"),
    (["run", "--task", "rte", "--method", "bitfit", "--groups", "b_q,b_x"], "unknown bias group 'b_x'"),
    (["run", "--task", "rte", "--method", "bitfit", "--learning-rate", "-1"], "learning_rate must be positive"),
    (["run", "--task", "rte", "--method", "bitfit", "--epochs", "0"], "epochs must be positive"),
    (["grid", "--experiment", "everything"], "unknown experiment"),
    (["grid", "--experiment", "size_curve", "--tasks", "rte"], "runs on the profile's own task"),
    (["params", "--model", "no-such/model-anywhere"], "no config for model"),
])
def test_bad_input_is_one_clear_error(argv, message, capsys, tmp_path):
    assert main(argv + ([] if argv[0] == "params" else ["--results", str(tmp_path)])) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_missing_glue_file_is_reported(capsys, tmp_path):
    argv = ["run", "--profile", "smoke", "--task", "rte", "--method", "bitfit", "--glue-dir", str(tmp_path),
            "--results", str(tmp_path / "results")]
    assert main(argv) == 2
    assert "missing GLUE file" in capsys.readouterr().err


def test_corrupt_results_file_stops_the_grid_and_is_kept(capsys, tmp_path):
    folder = tmp_path / "smoke" / "rte"
    folder.mkdir(parents=True)
    assert main(["grid", "--profile", "smoke", "--experiment", "main", "--tasks", "rte", "--dry-run",
                 "--results", str(tmp_path)]) == 0
    name = capsys.readouterr().out.split("to run: ")[1].split()[0]
    (folder / name).write_text("{truncated")
    assert main(["grid", "--profile", "smoke", "--experiment", "main", "--tasks", "rte",
                 "--results", str(tmp_path)]) == 2
    assert f"corrupt results file {folder / name}" in capsys.readouterr().err
    assert (folder / name).read_text() == "{truncated"


def test_grid_dry_run_lists_pending_runs(capsys, tmp_path):
    assert main(["grid", "--profile", "smoke", "--experiment", "ablation", "--tasks", "rte,mrpc",
                 "--results", str(tmp_path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "10 runs, 0 finished, 10 to run" in out
    assert re.search(r"\nb_q \+ b_m2 +0/1  0/1\n", out)  # finished seeds per variant and task, by display name
    assert not any(tmp_path.rglob("*.json"))


def test_two_workers_split_a_grid_without_overlap(capsys, tmp_path):
    grid = ["grid", "--profile", "smoke", "--experiment", "ablation", "--tasks", "rte,mrpc", "--results",
            str(tmp_path), "--dry-run"]
    runs = []
    for worker in ("1/2", "2/2"):
        assert main([*grid, "--worker", worker]) == 0
        out = capsys.readouterr().out
        assert f"10 runs, worker {worker}: 5 of them" in out
        runs.append({line.split()[2] for line in out.splitlines() if "to run:" in line})
    assert len(runs[0] | runs[1]) == 10 and not runs[0] & runs[1]
    assert main([*grid, "--worker", "3/2"]) == 2
    assert "worker 3 of 2 does not exist" in capsys.readouterr().err
    assert main([*grid, "--worker", "1/0"]) == 2
    assert "worker 1 of 0 does not exist" in capsys.readouterr().err
    assert main([*grid, "--worker", "2"]) == 2
    assert "write it as K/N" in capsys.readouterr().err



def test_report_on_an_empty_folder_says_what_to_do(capsys, tmp_path):
    assert main(["report", "--profile", "smoke", "--results", str(tmp_path)]) == 2
    assert "no finished runs" in capsys.readouterr().err


def test_demo_shows_one_bar_per_run_then_the_table(shared_glue_dir, tmp_path, capsys):
    """The main job on real data with the real model (smoke sizes): no raw Trainer log dicts."""
    argv = ["demo", "--profile", "smoke", "--glue-dir", str(shared_glue_dir), "--results", str(tmp_path)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    table = captured.out.split("Dev accuracy")[1]
    assert [line.split()[0] for line in table.splitlines()[2:5]] == ["Full-FT", "BitFit", "Frozen"]
    assert "'loss'" not in captured.out + captured.err and "{'" not in captured.out + captured.err
    assert all(f"sst2 {name} seed 0: 100%" in captured.err for name in ("Full-FT", "BitFit", "Frozen"))
    assert f"GLUE from {shared_glue_dir.resolve()}" in captured.out  # the folder it was given
    assert main(argv) == 0 and "100%" not in capsys.readouterr().err  # the second time reuses the runs


def test_grid_methods_keeps_the_named_variants(capsys, tmp_path):
    grid = ["grid", "--profile", "smoke", "--experiment", "ablation", "--tasks", "rte", "--results", str(tmp_path),
            "--dry-run"]
    assert main([*grid, "--methods", "bitfit:b_q+b_m2,bitfit:b_q"]) == 0
    assert "2 runs, 0 finished, 2 to run" in capsys.readouterr().out
    assert main([*grid, "--methods", "b_q"]) == 2
    assert "--methods b_q: not in this experiment, whose methods are bitfit:b_q+b_m2" in capsys.readouterr().err


def test_run_saves_a_delta_and_predict_answers_with_it(shared_glue_dir, tmp_path, capsys):
    deltas = tmp_path / "deltas"
    run = ["run", "--profile", "smoke", "--task", "mrpc", "--method", "bitfit", "--glue-dir", str(shared_glue_dir),
           "--results", str(tmp_path / "results"), "--deltas", str(deltas)]
    assert main(run) == 0
    (delta,) = deltas.glob("*.safetensors")
    assert f"delta: {delta}" in capsys.readouterr().out
    assert main(["predict", "--delta", str(delta), "He said hello. ||| He greeted us."]) == 0
    out = capsys.readouterr().out
    assert re.search(r"He said hello\. \|\|\| He greeted us\.\s+mrpc\s+(not_)?equivalent\s+0\.\d{3}", out)
    assert main(["predict", "--delta", str(delta), "one sentence alone"]) == 2
    assert "MRPC reads a sentence pair, written 'first ||| second'" in capsys.readouterr().err
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("A cat sat.\tA cat was sitting.\nIt rained.\tThe sun shone.\n")
    assert main(["predict", "--delta", str(delta), "--tsv", str(tsv)]) == 0
    assert capsys.readouterr().out.count("mrpc") == 2
    undecodable = b"caf\xe9 ||| a caf\xe9".decode("utf-8", "surrogateescape")  # Latin-1 bytes, as argv keeps them
    assert main(["predict", "--delta", str(delta), undecodable]) == 2
    assert "a text on the command line is not UTF-8 (b'caf\\xe9" in capsys.readouterr().err


def test_a_second_run_of_a_run_in_training_says_so(tmp_path, capsys, monkeypatch):
    """Another live process holds the run's claim: one line that says so, not a false 'already finished'."""
    import contextlib

    from bitfit_edu.experiments.results import ResultStore

    monkeypatch.setattr(ResultStore, "claim", lambda store, config: contextlib.nullcontext(False))
    argv = ["run", "--profile", "smoke", "--task", "rte", "--method", "bitfit", "--results", str(tmp_path)]
    assert main(argv) == 2
    assert "another process is training this run now" in capsys.readouterr().err


def test_full_fine_tuning_has_no_delta_to_save(tmp_path, capsys):
    assert main(["run", "--profile", "smoke", "--task", "rte", "--method", "full", "--deltas", str(tmp_path)]) == 2
    assert "full trains more than biases and a head, so it has no delta" in capsys.readouterr().err


def test_a_reader_that_stops_early_gets_no_traceback(tmp_path):
    command = (f"{sys.executable} -m bitfit_edu grid --profile smoke --experiment ablation --results {tmp_path} "
               "--dry-run | head -n 1")
    done = subprocess.run(command, shell=True, capture_output=True, text=True, check=True)
    assert done.stdout.startswith("ablation on profile smoke") and "Traceback" not in done.stderr


def test_demo_table_sets_the_committed_grid_beside_the_demo():
    from synthetic_records import record

    from bitfit_edu.commands import demo_table

    demo = [record(m, 0, 1e-3, [0.7, s], task="sst2") for m, s in (("full", 0.82), ("bitfit", 0.79), ("frozen", 0.7))]
    grid = [record(m, seed, 1e-3, [0.7, s + seed / 100], task="sst2") for m, s in (("full", 0.82), ("bitfit", 0.81))
            for seed in range(2)]
    table = demo_table(demo, grid)
    assert list(table.index) == ["Full-FT", "BitFit", "Frozen"]
    assert table.loc["BitFit", "committed grid: last epoch"] == "81.5 (2 seeds, 2 ep.)"
    assert table.loc["Frozen", "committed grid: last epoch"] == "not run"
    assert "committed grid: last epoch" not in demo_table(demo)


def test_report_counts_each_run_once_never_mixes_settings_and_says_what_it_left_out(tmp_path, capsys):
    import json
    import shutil
    from dataclasses import replace

    from synthetic_records import stored_record

    from bitfit_edu.evidence.tables import settings_summary
    from bitfit_edu.experiments.results import ResultStore
    from bitfit_edu.experiments.runs import RunConfig, RunRecord

    store = ResultStore.in_folder(tmp_path, "smoke")
    base = RunConfig(model="m", task="rte", method="bitfit", epochs=2)
    for seed in range(3):
        store.write(RunRecord.from_json(stored_record(replace(base, seed=seed), dev=(0.5, 0.6))))
    for seed in range(2):  # the same runs in bf16: another setting, never averaged with the first
        store.write(RunRecord.from_json(stored_record(replace(base, seed=seed, bf16=True), dev=(0.5, 0.7))))
    first = store.path(replace(base, seed=0))
    shutil.copy(first, first.with_name("copied.json"))
    shutil.copy(first, tmp_path / "smoke" / first.name)  # a second copy in another folder
    for seed, dev in ((5, (0.5, float("nan"))), (6, (0.5, 7.5))):
        store.path(replace(base, seed=seed)).write_text(json.dumps(stored_record(replace(base, seed=seed), dev=dev)))
    edited = stored_record(replace(base, seed=7))
    edited["config"]["learning_rate"] = 0.003
    store.path(replace(base, seed=7)).write_text(json.dumps(edited))
    (store.root / "rte" / "broken.json").write_text(json.dumps({**stored_record(base), "sizes": {}}))
    records, left_out = store.checked_records()
    assert len(records) == 5 and len(left_out) == 6
    assert main(["report", "--profile", "smoke", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.count("left out") == 6 and "5 finished runs" in out and "a second copy" in out
    assert "NaN, or outside -1..1" in out and "its name is not its configuration's run id" in out
    seeds = {(key[4], value) for key, value in settings_summary(records)["seeds"].items()}
    assert seeds == {("bf16", 2), ("fp32", 3)}
    shown = ResultStore.in_folder(tmp_path, "smoke")  # two settings that differ in more than the columns show
    for seed in range(2):
        for size in (100, 500):
            shown.write(RunRecord.from_json(stored_record(replace(base, task="mrpc", seed=seed, train_size=size))))
    table = settings_summary([r for r in shown.checked_records()[0] if r.task == "mrpc"])
    assert [key[5] for key in table.index] == ["train_size 100", "train_size 500"]  # named, not a digest
    assert set(table["seeds"]) == {2}


def test_serve_refuses_a_bad_port_and_a_bad_delta_before_it_says_serving(tmp_path, capsys):
    (tmp_path / "bad.safetensors").write_text("not a delta")
    with pytest.raises(SystemExit):
        main(["serve", "--deltas", str(tmp_path), "--port", "70000"])
    assert "70000 is not a port" in capsys.readouterr().err
    assert main(["serve", "--deltas", str(tmp_path), "--port", "0"]) == 2
    found = capsys.readouterr()
    assert "serving" not in found.out and "corrupt delta file" in found.err


def test_reading_the_command_line_loads_neither_torch_nor_transformers():
    code = ("import sys; from bitfit_edu import cli; cli.parser().parse_args(['serve', '--deltas', 'x']); "
            "print(sorted(m for m in ('torch', 'transformers', 'pandas', 'datasets') if m in sys.modules))")
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "[]"


def test_the_parser_names_every_start_and_experiment():
    from bitfit_edu import cli
    from bitfit_edu.core.starts import STARTS
    from bitfit_edu.experiments.grids import EXPERIMENTS

    assert cli.START_NAMES == tuple(STARTS)
    assert cli.EXPERIMENT_HELP == ", ".join(EXPERIMENTS)


def test_sigterm_while_the_command_loads_torch_ends_with_its_message():
    import signal
    import time

    process = subprocess.Popen([sys.executable, "-m", "bitfit_edu", "census", "--model", "bert-base-cased"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)  # the arguments are read (a quarter of a second); torch and transformers take seconds more
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 143, (out, err)
    assert "terminated (SIGTERM)" in err and "Traceback" not in err


def test_help_of_doctor_is_help():
    found = subprocess.run([sys.executable, "-m", "bitfit_edu", "doctor", "--help"], capture_output=True, text=True)
    assert found.returncode == 0 and found.stdout.startswith("usage: python -m bitfit_edu doctor")
