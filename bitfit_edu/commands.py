"""What each command of the command line does (``cli`` reads the arguments and calls one of these). Importing
this module loads torch and transformers, so ``cli`` imports it only once it knows the command."""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch
from transformers import AutoModel

from . import paper
from .core import precision
from .core.biases import census_table
from .core.counting import accounting_table, load_config, share_of_model
from .core.methods import display_name, parse_label
from .data import locations
from .data.glue import get_task
from .deploy.deltas import DELTA_METHODS, TRUST_UNSIGNED
from .deploy.serving import PAIR_SEPARATOR, predict, serve
from .errors import BitFitError
from .evidence.tables import SETTING_GROUPS, runs_frame, settings_summary
from .experiments.grids import MAIN, experiment_configs, grid_progress
from .experiments.profiles import get_profile
from .experiments.results import ResultStore
from .experiments.runner import delta_path, run_grid, then_the_others, to_train, worker_runs
from .experiments.runs import RunConfig, RunRecord


def _csv(value: str, option: str) -> list[str]:
    """'rte, mrpc' -> ['rte', 'mrpc']; a value that names nothing is an error, not 'all'."""
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise BitFitError(f"{option} {value!r} names nothing: give a comma-separated list, or leave {option} out")
    return items


def _ints(value: str, option: str) -> list[int]:
    items = _csv(value, option)
    if not all(item.isdigit() for item in items):
        raise BitFitError(f"{option} {value!r}: give whole numbers from 0, comma separated (e.g. 0,1,2)")
    return [int(item) for item in items]


def _worker(value: str) -> tuple[int, int]:
    """'2/3' -> (2, 3)."""
    worker, _, workers = value.partition("/")
    if not (worker.isdigit() and workers.isdigit()):
        raise BitFitError(f"--worker {value!r}: write it as K/N, e.g. 1/2 and 2/2 for two workers")
    return int(worker), int(workers)


def cmd_params(args) -> None:
    if args.num_labels < 1:
        raise BitFitError(f"--num-labels must be at least 1 (1 is a regression head), got {args.num_labels}")
    table = accounting_table(args.model, num_labels=args.num_labels)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.to_string(formatters={c: "{:,}".format for c in
                                          ("total params", "bias params", "head params", "bias+head")}))
    for name, row in table.iterrows():
        paper_note = "" if pd.isna(row["paper %"]) else f"; the paper prints {row['paper %']:.2f}%"
        print(f"{name}: {int(row['bias params']):,} bias parameters of {int(row['total params']):,} "
              f"= {row['bias %']:.3f}% (rounded {row['bias % (round)']:.2f}%, "
              f"truncated {row['bias % (truncated)']:.2f}%{paper_note})")


def cmd_census(args) -> None:
    with torch.device("meta"):
        model = AutoModel.from_config(load_config(args.model))
    print(census_table(model).to_string())


def cmd_run(args) -> None:
    profile = get_profile(args.profile)
    if args.groups is not None and ":" in args.method:
        raise BitFitError(f"--method {args.method} already names its bias groups: drop --groups, or use "
                          "--method bitfit with --groups")
    method, groups = (args.method, tuple(_csv(args.groups, "--groups"))) if args.groups is not None \
        else parse_label(args.method)
    config = RunConfig.from_profile(profile, args.task, method, seed=args.seed, groups=groups,
                                    learning_rate=args.learning_rate, epochs=args.epochs, train_size=args.train_size,
                                    bf16=args.bf16, start=args.start).with_data(args.glue_dir)
    if args.deltas and config.start is not None:
        raise BitFitError(f"--start {config.start}: a delta applies to the pre-trained backbone it was trained on, "
                          "and this run's encoder is not that backbone: drop --deltas")
    if args.deltas and config.method not in DELTA_METHODS:
        raise BitFitError(f"{config.label} trains more than biases and a head, so it has no delta: drop --deltas "
                          "(deltas are for bitfit, its variants, and frozen)")
    store = ResultStore.in_folder(args.results, profile.name)
    report = run_grid([config], store, glue_dir=args.glue_dir, deltas=args.deltas)
    if report.held:
        raise BitFitError(f"another process is training this run now ({store.path(config).with_suffix('.lock')}): "
                          "wait for it to finish, then run the same command again to read its record")
    record = store.finished(config)
    state = "trained" if report.trained else "already finished"
    print(f"{state}: {store.path(config)}")
    if args.deltas:
        print(f"delta: {delta_path(config, args.deltas)}")
    print(f"best dev {', '.join(config.task_spec.metrics)} at epoch {record.best_epoch}: "
          + ", ".join(f"{k}={v:.4f}" for k, v in {**record.best.metrics, "score": record.best.score}.items()))


def cmd_grid(args) -> None:
    profile = get_profile(args.profile)
    configs = experiment_configs(profile, args.experiment,
                                 None if args.tasks is None else _csv(args.tasks, "--tasks"),
                                 None if args.seeds is None else _ints(args.seeds, "--seeds"))
    configs = list(dict.fromkeys(c.with_data(args.glue_dir) for c in configs))  # 'rte,RTE': one run once
    if args.methods is not None:
        configs = only_methods(configs, _csv(args.methods, "--methods"))
    if not configs:
        raise BitFitError(f"experiment {args.experiment!r} has no runs in profile {profile.name!r} "
                          "(it sets no sizes for it): choose another profile, e.g. --profile classroom")
    if args.bf16 is not None:
        configs = [replace(config, bf16=args.bf16) for config in configs]
    store = ResultStore.in_folder(args.results, profile.name)
    mine = worker_runs(configs, *_worker(args.worker)) if args.worker is not None else configs
    todo = to_train(mine, store, args.deltas)
    worker = f", worker {args.worker}: {len(mine)} of them" if args.worker else ""
    print(f"{args.experiment} on profile {profile.name}: {len(configs)} runs{worker}, "
          f"{len(mine) - len(todo)} finished, {len(todo)} to run, results in {store.root}")
    if any(config.bf16 for config in todo):
        print(f"bf16 products on this machine ({precision.hardware_name()}): {precision.matrix_products(True)}")
    if args.dry_run:
        print("finished runs per method and task (all workers):")
        print(grid_progress(configs, store).to_string())
        for config in todo:
            print(f"  to run: {store.path(config).name} ({config.train_size or 'all'} examples, {config.length}, "
                  f"{config.number_format})")
        return
    report = run_grid(then_the_others(configs, mine), store, glue_dir=args.glue_dir, deltas=args.deltas)
    print(f"trained {len(report.trained)} runs")
    if report.held:
        print(f"{len(report.held)} runs left to the other process that is training them now: "
              + ", ".join(store.path(config).name for config in report.held[:5])
              + (" ..." if len(report.held) > 5 else "") + "; run the grid again once it has finished")


def cmd_measure(args) -> None:
    profile = get_profile(args.profile)
    if args.what == "vision":
        from .experiments import vision

        if args.worker:
            raise BitFitError("--worker splits probes and cka between processes; the toy ViT runs in one: drop it")
        path = vision.results_file() if args.out is None else Path(args.out)
        path.parent.mkdir(parents=True, exist_ok=True)
        written = path.with_name(f".{path.name}.tmp")  # replaced whole, so a stopped run leaves the old file
        written.write_text(json.dumps(vision.run_all(), indent=1), encoding="utf-8")
        os.replace(written, path)
        print(f"the toy vision transformer's runs: {path}")
        return
    from .experiments import measurements

    written = measurements.measure(profile, args.what, *(_worker(args.worker) if args.worker else (1, 1)),
                                   glue_dir=args.glue_dir, root=args.out)
    print(f"{len(written)} measurements written" + "".join(f"\n  {path}" for path in written))


def only_methods(configs: list[RunConfig], labels: list[str]) -> list[RunConfig]:
    """The configs of the given method labels; a label the experiment does not have is an error."""
    known = list(dict.fromkeys(config.label for config in configs))
    unknown = [label for label in labels if label not in known]
    if unknown:
        raise BitFitError(f"--methods {','.join(unknown)}: not in this experiment, "
                          f"whose methods are {', '.join(known)}")
    return [config for config in configs if config.label in labels]


def cmd_report(args) -> None:
    profile = get_profile(args.profile)
    store = ResultStore.in_folder(args.results, profile.name)
    records, left_out = store.checked_records()
    for path, why in left_out:
        print(f"left out {path}: {why}")
    if not records:
        raise BitFitError(f"no finished runs in {store.root}: run 'grid' or 'run' first")
    print(f"{len(records)} finished runs in {store.root}; dev scores x100 (mean of a task's metrics), over the "
          "seeds of each setting (runs whose configurations differ only in their seed):")
    summary = settings_summary(records).reset_index()
    summary["learning_rate"] = summary["learning_rate"].map("{:g}".format)
    summary["best_std"] = summary["best_std"].map(lambda std: "n/a (1 seed)" if pd.isna(std) else f"{std:.1f}")
    with pd.option_context("display.width", 220, "display.max_rows", 500):
        print(summary.set_index(list(SETTING_GROUPS)).to_string())


def demo_table(records: list[RunRecord], committed: list[RunRecord] = ()) -> pd.DataFrame:
    """The demo's table: our runs, the committed grid's runs of the same methods on the same task (mean over
    seeds, labelled), and the paper's BERT-base GLUE dev averages."""
    frame = runs_frame(records).set_index("method")
    paper_average = [paper.BERT_BASE_DEV_AVERAGE[m] for m in frame.index]
    table = pd.DataFrame({
        "trains (excl. head)": frame["trainable_without_head"].map("{:,}".format),
        "% of encoder": share_of_model(frame["trainable_without_head"], frame["encoder"]).map("{:.3f}%".format),
        "dev, best epoch": frame["best"].map("{:.1f}".format),
        "dev, last epoch": frame["last"].map("{:.1f}".format),
        "train s": frame["train_seconds"].map("{:.0f}".format),
    })
    if committed:
        grid = runs_frame(list(committed)).groupby("method").agg(last=("last", "mean"), seeds=("seed", "size"),
                                                                 epochs=("epochs", "max"))
        table["committed grid: last epoch"] = [
            f"{grid.loc[m, 'last']:.1f} ({grid.loc[m, 'seeds']} seeds, {grid.loc[m, 'epochs']} ep.)" if m in grid.index
            else "not run" for m in frame.index]
    table["paper: BERT-base GLUE dev avg"] = paper_average
    table.index = [display_name(m) for m in frame.index]
    return table


def committed_demo_runs(profile, task: str) -> list[RunRecord]:
    """The committed main grid's runs of the demo's methods on ``task`` (none for a profile without them)."""
    return ResultStore.committed(profile.name).load(experiment_configs(profile, "main", tasks=[task]))[0]


def cmd_demo(args) -> None:
    profile = get_profile(args.profile)
    task = get_task(args.task or profile.demo_task)
    configs = [RunConfig.for_demo(profile, task.name, method, groups=groups, bf16=args.bf16).with_data(args.glue_dir)
               for method, groups in map(parse_label, MAIN)]
    store = ResultStore.in_folder(args.results, profile.name)
    first = configs[0]
    print(f"BitFit demo: Full-FT vs BitFit vs Frozen, {profile.model} ({first.readout} readout) on "
          f"{task.folder}, {first.train_size or 'all'} training examples, {first.epochs} epochs, "
          f"{first.number_format}, seed 0, profile {profile.name!r}.\n{locations.describe(args.glue_dir)}.\n"
          f"Runs are kept in {store.root} (delete it to retrain).")
    run_grid(configs, store, glue_dir=args.glue_dir, deltas=args.deltas)
    committed = committed_demo_runs(profile, task.name)
    records = [store.finished(c) for c in configs]
    table = demo_table(records, committed)
    print(f"\nDev {' / '.join(task.metrics)} (x100; the mean of both where there are two):")
    print(table.to_string())
    if committed:
        ours, grid = (runs_frame(list(runs)).groupby("method")["last"].mean() for runs in (records, committed))
        print(f"\nThe demo gives every method {first.epochs} epochs on {first.train_size:,} examples, to end within "
              f"minutes; BitFit's last-epoch gap to Full-FT here: {ours['bitfit'] - ours['full']:+.1f} points. The "
              f"committed grid (results/{profile.name}/) trains {max(r.train_size for r in committed):,} examples and "
              f"gives bias-only methods the extra epochs they need ('ep.' in its column): a gap of "
              f"{grid['bitfit'] - grid['full']:+.1f} points over its seeds.")
    print(f"\nThe last column is the paper's, not ours: {paper.CITATION}, BERT-base, "
          "the average over the 8 GLUE tasks, not this task alone.")


def _trust_unsigned(args) -> None:
    """``--trust-unsigned``: load first-format deltas, checked by their reference logits alone."""
    if args.trust_unsigned:
        os.environ[TRUST_UNSIGNED] = "1"


def cmd_predict(args) -> None:
    _trust_unsigned(args)
    for text in args.text:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # bytes that are not UTF-8, which Python keeps as lone surrogates
            shown = text.encode("utf-8", "surrogateescape")[:40]
            raise BitFitError(f"a text on the command line is not UTF-8 ({shown!r}): give texts in UTF-8, or put "
                              "them in a --tsv file") from None
    texts = list(args.text)
    if args.tsv:
        texts += _tsv_texts(args.tsv)
    if not texts:
        raise BitFitError("nothing to predict: give sentences (a pair as 'first ||| second') or --tsv FILE")
    server = serve(args.delta, precision=args.precision)
    answers = predict(server, texts)
    answers["value"] = answers["value"].map("{:.3f}".format)
    with pd.option_context("display.max_colwidth", 60, "display.width", 200):
        print(answers.to_string(index=False))


def _tsv_texts(path: str) -> list[str]:
    """Texts from a TSV file: one sentence per line, or a pair in two tab-separated columns."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise BitFitError(f"cannot read --tsv {path}: {error}") from None
    return [PAIR_SEPARATOR.join(line.split("\t")) for line in lines if line.strip()]


def cmd_serve(args: argparse.Namespace) -> int:
    from .deploy import backbone_precision
    from .deploy.service import Settings, run_service

    _trust_unsigned(args)

    folder = Path(args.deltas)
    if not folder.is_dir():
        raise BitFitError(f"--deltas {args.deltas} is not a folder: give the folder that holds the delta files "
                          "(*.safetensors), e.g. results/deployment/classroom/deltas")
    if args.threads is not None and args.threads < 1:
        raise BitFitError(f"--threads {args.threads}: give at least 1")
    if args.workers is not None and args.workers < 1:
        raise BitFitError(f"--workers {args.workers}: give at least 1")
    if args.max_queue < 1:
        raise BitFitError(f"--max-queue {args.max_queue}: give at least 1")
    settings = Settings(folder.resolve(), max_batch=1 if args.switching else args.max_batch,
                        max_wait_ms=args.max_wait_ms, max_length=args.max_length, switching=args.switching,
                        threads=args.threads, workers=args.workers, memory_release=args.memory_release,
                        max_queue=args.max_queue, precision=backbone_precision.resolve(args.precision))
    return run_service(settings, args.host, args.port, args.precision)


def cmd_student(args: argparse.Namespace) -> None:
    from .classroom import grading

    if args.graded:
        written = grading.student_build(Path(args.out))
        print(f"A course folder for a graded class in {args.out}: {len(written)} notebooks without their answers, "
              f"the package without its answer key, the committed results. Students install it with "
              f"`pip install -e {args.out}` (in their own environment) and open {args.out}/notebooks; "
              "grade their notebooks from this copy.")
        return
    written = grading.student_edition(Path(args.out))
    print(f"{len(written)} notebooks without their answers in {args.out}; exercises.check works in them with this "
          "package (self-study: it holds the answers). For a graded class, use --graded.")


def cmd_grade(args: argparse.Namespace) -> None:
    from collections import Counter

    from .classroom import grading

    out = Path(args.csv or Path(args.submissions) / "grades.csv")
    rows = grading.grade(Path(args.submissions), out, timeout=args.timeout, unsafe=args.unsafe)
    counts = Counter(row.result for row in rows)
    print(f"{len({row.student for row in rows})} students, {len(rows)} rows: "
          + ", ".join(f"{count} {result}" for result, count in sorted(counts.items())) + f". Written to {out}")
