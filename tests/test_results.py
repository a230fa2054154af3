"""The results store and the resumable grid: atomic records, clear errors, nothing lost on a crash."""

import json
import subprocess
import sys
from dataclasses import replace

import pytest
from synthetic_records import fake_record, stored_record

from bitfit_edu.core.counting import variant_parameters
from bitfit_edu.errors import BitFitError
from bitfit_edu.experiments.grids import (
    ABLATION,
    MAIN,
    counterparts,
    experiment_configs,
    grid_progress,
    with_settled,
)
from bitfit_edu.experiments.profiles import get_profile
from bitfit_edu.experiments.results import ResultStore
from bitfit_edu.experiments.runner import run_grid, to_train
from bitfit_edu.experiments.runs import SCHEMA, RunConfig, RunRecord


def configs(n=4):
    return [RunConfig(model="m", task="rte", method="bitfit", seed=s) for s in range(n)]


def test_write_then_read_round_trips(tmp_path):
    store = ResultStore(tmp_path)
    config = configs(1)[0]
    path = store.write(fake_record(config))
    assert path == tmp_path / "rte" / f"{config.run_id}.json"
    assert store.finished(config) == fake_record(config)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind
    assert path.stat().st_mode & 0o777 == 0o644  # readable like any committed file, not 0600 like a temp file


def test_corrupt_file_is_reported_not_reused(tmp_path):
    store = ResultStore(tmp_path)
    config = configs(1)[0]
    path = store.path(config)
    path.parent.mkdir(parents=True)
    path.write_text('{"schema": "bitfit_edu.run/1", "conf')
    with pytest.raises(BitFitError, match=r"corrupt results file .*not valid JSON.*move it out"):
        store.finished(config)
    assert path.read_text().endswith('"conf')  # the file is left as it was


def test_foreign_file_is_reported(tmp_path):
    store = ResultStore(tmp_path)
    (tmp_path / "rte").mkdir()
    (tmp_path / "rte" / "notes.json").write_text(json.dumps({"hello": "world"}))
    with pytest.raises(BitFitError, match="foreign file .*notes.json.*not a bitfit_edu run record"):
        store.records()


def test_edited_record_is_not_reused(tmp_path):
    store = ResultStore(tmp_path)
    config = configs(1)[0]
    record = stored_record(config)
    record["config"]["learning_rate"] = 0.5
    store.path(config).parent.mkdir(parents=True)
    store.path(config).write_text(json.dumps(record))
    with pytest.raises(BitFitError, match="different configuration"):
        store.finished(config)


def test_grid_killed_midway_resumes_and_loses_nothing(tmp_path):
    store = ResultStore(tmp_path)
    grid = configs(4)
    calls = []

    def crashing_run(config, glue_dir=None, progress=False):
        if len(calls) == 2:
            raise KeyboardInterrupt  # the session ends in the middle of the third run
        calls.append(config)
        return fake_record(config)

    with pytest.raises(KeyboardInterrupt):
        run_grid(grid, store, run_fn=crashing_run, progress=False)
    assert len(store.records()) == 2 and len(to_train(grid, store)) == 2

    def counting_run(config, glue_dir=None, progress=False):
        calls.append(config)
        return fake_record(config)

    report = run_grid(grid, store, run_fn=counting_run, progress=False)
    assert len(report.trained) == 2
    assert calls[2:] == grid[2:]  # only the unfinished runs ran again
    assert len(store.records()) == 4


def test_loaded_records_hold_exactly_the_grids_runs(tmp_path):
    store = ResultStore(tmp_path)
    grid = configs(3)
    for config in (grid[0], grid[2], replace(grid[1], learning_rate=0.5)):  # the last: another experiment's run
        store.write(fake_record(config))
    records, missing = store.load(grid)
    assert [r.seed for r in records] == [grid[0].seed, grid[2].seed] and missing == [grid[1]]


def test_grid_progress_counts_finished_seeds_per_method_and_task(tmp_path):
    store = ResultStore(tmp_path)
    grid = configs(3) + [replace(c, task="mrpc") for c in configs(3)]
    for config in grid[:2]:
        store.write(fake_record(config))
    progress = grid_progress(grid, store)
    assert progress.loc["BitFit", "rte"] == "2/3" and progress.loc["BitFit", "mrpc"] == "0/3"
    assert list(progress.columns) == ["rte", "mrpc"]


def test_a_corrupt_file_stops_the_grid_before_any_training(tmp_path):
    store = ResultStore(tmp_path)
    grid = configs(3)
    store.path(grid[2]).parent.mkdir(parents=True)
    store.path(grid[2]).write_text("not json")

    def must_not_run(config, **kwargs):
        raise AssertionError("trained although the grid should have stopped")

    with pytest.raises(BitFitError, match="corrupt results file"):
        run_grid(grid, store, run_fn=must_not_run, progress=False)


def test_experiment_grids():
    profile = get_profile("classroom")
    main = experiment_configs(profile, "main")
    assert len(main) == len(profile.tasks) * 3 * len(profile.claim_seeds)  # the claims' variants: more seeds
    assert len({c.run_id for c in main}) == len(main)
    seeds = {label: {c.seed for c in experiment_configs(profile, "ablation") if c.label == label}
             for label in ("bitfit:b_q+b_m2", "bitfit:b_q")}
    assert seeds == {"bitfit:b_q+b_m2": set(profile.claim_seeds), "bitfit:b_q": set(profile.seeds)}
    ablation = experiment_configs(profile, "ablation", tasks=["rte"], seeds=[0])
    assert [c.label for c in ablation] == ["bitfit:b_q+b_m2", "bitfit:b_m2", "bitfit:b_q", "rand_uniform",
                                           "rand_row_col"]
    assert [(c.seed, c.task) for c in main[:3]] == [(0, profile.tasks[0])] * 3  # whole seeds first
    assert {c.task for c in experiment_configs(profile, "ablation")} == set(profile.ablation_tasks)
    bias_epochs = profile.epochs["bitfit"]  # every bias-only method: more epochs than Full-FT
    assert {(c.method, c.epochs) for c in main} == {("full", profile.epochs["full"]), ("bitfit", bias_epochs),
                                                   ("frozen", bias_epochs)}
    sweep = experiment_configs(profile, "lr_sweep")
    assert {c.task for c in sweep} == {profile.sweep_task} and {c.seed for c in sweep} == {profile.seeds[0]}
    assert {c.epochs for c in sweep} == {profile.sweep_settings["epochs"]}
    long_bitfit, full = experiment_configs(profile, "checks")
    assert (long_bitfit.method, long_bitfit.epochs, long_bitfit.bf16) == ("bitfit", 3 * sweep[0].epochs, profile.bf16)
    assert full.epochs == sweep[0].epochs and full.task == profile.sweep_task
    assert {(c.method, c.learning_rate) for c in sweep} >= {("full", 2e-5), ("bitfit", 1e-3)}
    with pytest.raises(BitFitError, match="unknown experiment"):
        experiment_configs(profile, "everything")


def test_variant_parameters_same_size_baselines(tiny_model_dir):
    table = variant_parameters(tiny_model_dir, "cls_pooler", (*MAIN, *ABLATION))
    trained = table["trained entries (excl. head)"]
    assert trained["Full-FT"] > trained["BitFit"] > trained["b_q + b_m2"] > trained["b_q"] > 0
    assert trained["Frozen"] == 0
    assert trained["random entries"] == trained["random rows/columns"] == trained["BitFit"]  # as many as biases
    assert table.loc["BitFit", "paper: %param (BERT-base)"] == "0.09%"


def test_committed_results_still_match_the_code(classroom_results):
    """Changing RunConfig (a new field, say) must not orphan finished runs: their ids must not move."""
    profile = get_profile("classroom")
    for experiment in ("lr_sweep", "checks"):
        _, missing = classroom_results.load(experiment_configs(profile, experiment))
        assert missing == [], f"{experiment}: committed runs no longer match their configs"


def test_step_budget_fields_stay_out_of_ids_until_used():
    config = RunConfig(model="m", task="rte", method="bitfit")
    assert "max_steps" not in config.as_dict()
    budgeted = replace(config, max_steps=100, eval_every=10)
    assert budgeted.as_dict()["max_steps"] == 100 and budgeted.run_id != config.run_id
    assert budgeted.length == "100 steps" and config.length == f"{config.epochs} epochs"


def test_size_curve_budgets_steps_at_both_ends_and_reuses_the_grid_size():
    profile = get_profile("classroom")
    curve = experiment_configs(profile, "size_curve", seeds=[0])
    assert [(c.train_size, c.method) for c in curve[:2]] == [(profile.size_curve[0], "full"),
                                                            (profile.size_curve[0], "bitfit")]
    fewest, most = profile.step_range
    for config in curve:
        steps = config.max_steps or config.epochs * -(-config.train_size // config.batch_size)
        assert fewest <= steps <= most
        assert config.max_steps is None or config.eval_every * profile.evaluations == config.max_steps
    smallest = curve[0]
    assert smallest.max_steps == fewest  # 100 examples: not a handful of steps
    assert {c.max_steps for c in curve if c.train_size == profile.size_curve[-1]} == {most}  # capped
    main = set(experiment_configs(profile, "main", tasks=[profile.size_task], seeds=[0]))
    assert any(c in main for c in curve)  # a size-curve run at the grid's own size is the grid's run


def test_a_record_of_an_unknown_version_is_one_clear_error(tmp_path):
    store = ResultStore(tmp_path)
    config = configs(1)[0]
    record = {**stored_record(config), "schema": "bitfit_edu.run/9"}
    store.path(config).parent.mkdir(parents=True)
    store.path(config).write_text(json.dumps(record))
    with pytest.raises(BitFitError, match="schema 'bitfit_edu.run/9', which this version of bitfit_edu cannot read"):
        store.finished(config)


def test_a_record_missing_a_field_is_one_clear_error():
    stored = stored_record(configs(1)[0])
    del stored["best"]
    with pytest.raises(BitFitError, match="incomplete run record here: no best"):
        RunRecord.from_json(stored, source="here")


def test_records_round_trip_through_the_store_unchanged(tmp_path):
    config = configs(1)[0]
    stored = stored_record(config, dev=(0.4, 0.6), train=(0.5, 0.9))
    ResultStore(tmp_path).write(RunRecord.from_json(stored))
    read = ResultStore(tmp_path).finished(config)
    assert json.loads(ResultStore(tmp_path).path(config).read_text()) == stored
    assert (read.best_epoch, read.best.score, read.best_evaluation.train.score) == (2, 0.6, 0.9)


def test_every_committed_record_loads_through_the_one_loader(classroom_results):
    results = classroom_results.root.parent
    stores = [classroom_results, *(ResultStore(results / kind / "classroom")
                                   for kind in ("bf16_emulation_check", "notebook02"))]
    records = [record for store in stores for record in store.records()]
    assert len(records) > 150
    assert all(isinstance(r, RunRecord) and r.stored["schema"] == SCHEMA for r in records)
    assert {r.timing.matrix_products for r in records} >= {"fp32", "bf16", "bf16, emulated in fp32"}


def test_load_reads_finished_runs_and_lists_the_missing(tmp_path):
    store, grid = ResultStore(tmp_path), configs(2)
    store.write(fake_record(grid[0]))
    records, missing = store.load(grid)  # retrain=False: nothing trains
    assert [r.run_id for r in records] == [grid[0].run_id] and missing == grid[1:]


def test_counterparts_find_the_same_run_with_kernels_and_in_fp32(tmp_path):
    store = ResultStore(tmp_path)
    emulated = replace(configs(1)[0], bf16=True, epochs=5)
    with_kernels, in_fp32 = replace(emulated, epochs=10), replace(emulated, bf16=False)
    for config in (with_kernels, in_fp32):
        store.write(fake_record(config))
    runs = counterparts(fake_record(emulated), store, epochs=10)
    assert list(runs) == ["bf16, emulated", "bf16, kernels", "fp32"]
    assert runs["fp32"].config.bf16 is False and runs["bf16, kernels"].config.epochs == 10


def test_committed_stores_live_under_results(classroom_results):
    assert ResultStore.committed("classroom").root == classroom_results.root
    notebook02 = classroom_results.root.parent / "notebook02" / "classroom"
    assert ResultStore.committed("classroom", "notebook02").root == notebook02


def test_reading_records_does_not_import_the_training_engine(classroom_results):
    """The store, the experiments, the analysis and the plots read records; only a grid trains."""
    script = ("import sys; from bitfit_edu.evidence import claims, plots, tables; "
              "from bitfit_edu.experiments import grids, runner; "
              "from bitfit_edu.experiments.results import ResultStore; "
              "from bitfit_edu.experiments.profiles import get_profile; "
              "runner.load_grid(grids.experiment_configs(get_profile('classroom'), 'main'), "
              f"ResultStore({str(classroom_results.root)!r})); "
              "print(sorted(m for m in sys.modules if m in ('bitfit_edu.experiments.training', "
              "'transformers.trainer')))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_a_finished_run_without_its_delta_trains_again(tmp_path):
    store, (config,) = ResultStore(tmp_path / "results"), configs(1)
    store.write(fake_record(config))
    trained = []

    def saving_run(config, glue_dir=None, progress=False, delta=None):
        trained.append(config)
        delta.parent.mkdir(parents=True, exist_ok=True)
        delta.write_bytes(b"delta")
        return fake_record(config)

    run_grid([config], store, run_fn=saving_run, progress=False, deltas=tmp_path / "deltas")
    run_grid([config], store, run_fn=saving_run, progress=False, deltas=tmp_path / "deltas")
    assert trained == [config] and (tmp_path / "deltas" / f"{config.run_id}.safetensors").exists()


def test_the_deployment_experiment_is_bitfit_per_task_at_demo_sizes():
    profile = get_profile("classroom")
    configs = experiment_configs(profile, "deployment")
    assert [c.task for c in configs] == list(profile.tasks) and {c.label for c in configs} == {"bitfit"}
    assert {(c.train_size, c.epochs, c.bf16) for c in configs} == {(profile.demo_train_size, profile.demo_epochs,
                                                                      profile.bf16)}


def test_figure_1_runs_are_the_main_grids_bitfit_on_rte_in_fp32(classroom_results):
    profile = get_profile("classroom")
    figure_1 = experiment_configs(profile, "figure_1")
    main = {replace(c, bf16=False) for c in experiment_configs(profile, "main")
            if c.method == "bitfit" and c.task == "rte"}
    assert set(figure_1) <= main and {c.seed for c in figure_1} == set(profile.seeds[:3])
    assert not any(c.bf16 for c in figure_1)
    records, missing = classroom_results.load(figure_1)
    assert missing == [] and {r.timing.matrix_products for r in records} == {"fp32"}
    with pytest.raises(BitFitError, match="profile's own task"):
        experiment_configs(profile, "figure_1", tasks=["rte"])


def test_settle_runs_are_the_declared_ones(classroom_results):
    """Experiment 'settle' (issue #32): the seeds declared with the protocol, cheapest first, and each run the
    same configuration as the grid it extends, so its records join that grid's tables."""
    profile = get_profile("classroom")
    settle = experiment_configs(profile, "settle")
    assert len(settle) == len({c.run_id for c in settle}) == 28 + 2 + 40 + 8
    small_end, lora, subsets, rows = settle[:28], settle[28:30], settle[30:70], settle[70:]
    assert {(c.train_size, c.seed) for c in small_end} == {(n, s) for n in (100, 500) for s in range(3, 10)}
    assert {c.run_id for c in small_end} <= {c.run_id for c in experiment_configs(profile, "size_curve",
                                                                                  seeds=range(3, 10))}
    assert {(c.method, c.learning_rate, c.task) for c in lora} == {("lora_r8", 1e-2, "mrpc"), ("lora_r3", 1e-2, "mrpc")}
    assert {c.label for c in subsets} == {"bitfit", "bitfit:b_q+b_m2"}
    assert {c.seed for c in subsets} == set(range(5, 10)) and {c.task for c in subsets} == set(profile.ablation_tasks)
    extended = {c.run_id for seed in range(5) for experiment in ("main", "ablation")
                for c in experiment_configs(profile, experiment, seeds=[seed])}
    assert {replace(c, seed=0).run_id for c in subsets + rows} <= extended
    assert {(c.label, c.seed) for c in rows} == {("rand_row_col", 3), ("rand_row_col", 4)}
    with pytest.raises(BitFitError, match="drop --tasks and --seeds"):
        experiment_configs(profile, "settle", tasks=["rte"])


def test_with_settled_adds_only_the_seeds_that_extend_a_grid():
    profile = get_profile("classroom")
    main = experiment_configs(profile, "main", tasks=profile.ablation_tasks)
    extended = with_settled(profile, main)
    added = extended[len(main):]
    assert extended[:len(main)] == main and {c.label for c in added} == {"bitfit"}
    assert {c.seed for c in added} == set(range(5, 10)) and {c.task for c in added} == set(profile.ablation_tasks)
    sizes = experiment_configs(profile, "size_curve")
    assert {(c.train_size, c.seed) for c in with_settled(profile, sizes)[len(sizes):]} == {
        (n, s) for n in (100, 500) for s in range(3, 10)}


def test_resampled_runs_draw_their_own_training_subsample(glue_dir):
    from bitfit_edu.experiments import training

    profile = get_profile("classroom")
    resampled = experiment_configs(profile, "resampled")
    assert len(resampled) == 2 * len(profile.tasks) * 10 and {c.method for c in resampled} == {"full", "bitfit"}
    assert all(c.data_seed == c.seed for c in resampled)
    assert not {c.run_id for c in resampled} & {c.run_id for c in experiment_configs(profile, "main")}
    config = RunConfig(model="unused", task="rte", method="bitfit", train_size=8)
    texts = [training.load_data(replace(config, data_seed=seed), glue_dir)["train"]["sentence1"] for seed in (None, 1)]
    assert texts[0] != texts[1]
    assert training.load_data(replace(config, data_seed=0), glue_dir)["train"]["sentence1"] == texts[0]


def test_the_demo_trains_in_bf16_only_where_the_machine_has_the_kernels(monkeypatch):
    """`demo` passes --bf16 as None when it is not given: that must mean the machine's default, not bf16."""
    from bitfit_edu.core import precision

    profile = get_profile("classroom")
    for kernels in (False, True):
        monkeypatch.setattr(precision, "native_bf16", lambda kernels=kernels: kernels)
        assert RunConfig.for_demo(profile, "sst2", "bitfit", bf16=None).bf16 is kernels
    monkeypatch.setattr(precision, "native_bf16", lambda: False)
    assert RunConfig.for_demo(profile, "sst2", "bitfit", bf16=True).bf16  # asked for: kept
