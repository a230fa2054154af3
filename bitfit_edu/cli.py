"""Command line: ``python -m bitfit_edu {params,census,run,grid,report,demo,predict,serve,measure,doctor,classroom}``;
``-h`` for help."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch
from transformers import AutoModel

from . import paper
from .console import is_main_process, quiet_outputs
from .core import precision
from .core.biases import census_table
from .core.counting import accounting_table, load_config
from .core.methods import display_name, parse_label
from .core.starts import STARTS
from .data import locations
from .data.glue import get_task
from .deploy.deltas import DELTA_METHODS, TRUST_UNSIGNED
from .deploy.memory import DEFAULT_MEMORY_RELEASE, MEMORY_RELEASE
from .deploy.serving import PAIR_SEPARATOR, predict, serve
from .errors import BitFitError, Terminated, stop_on_sigterm
from .evidence.tables import SETTING_GROUPS, runs_frame, settings_summary
from .experiments.grids import EXPERIMENTS, MAIN, experiment_configs, grid_progress
from .experiments.profiles import PROFILES, get_profile
from .experiments.results import ResultStore
from .experiments.runner import delta_path, run_grid, then_the_others, to_train, worker_runs
from .experiments.runs import RunConfig, RunRecord


def _port(value: str) -> int:
    """A TCP port number, 0 to 65535 (0: any free port)."""
    if not value.isdigit() or int(value) > 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port: give a number from 0 to 65535")
    return int(value)


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
    encoder = frame["total"] - (frame["trainable"] - frame["trainable_without_head"])  # the head always trains
    table = pd.DataFrame({
        "trains (excl. head)": frame["trainable_without_head"].map("{:,}".format),
        "% of encoder": (100 * frame["trainable_without_head"] / encoder).map("{:.3f}%".format),
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


TRUST_HELP = ("load deltas of the first format, whose manifest (labels, task) no digest covers, checked by their "
              "reference logits alone")


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
    server = serve(args.delta)
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
    from .deploy.service import Settings, run_service

    _trust_unsigned(args)

    folder = Path(args.deltas)
    if not folder.is_dir():
        raise BitFitError(f"--deltas {args.deltas} is not a folder: give the folder that holds the delta files "
                          "(*.safetensors), e.g. results/deployment/classroom/deltas")
    if args.threads is not None and args.threads < 1:
        raise BitFitError(f"--threads {args.threads}: give at least 1")
    if args.max_queue < 1:
        raise BitFitError(f"--max-queue {args.max_queue}: give at least 1")
    settings = Settings(folder.resolve(), max_batch=1 if args.switching else args.max_batch,
                        max_wait_ms=args.max_wait_ms, max_length=args.max_length, switching=args.switching,
                        threads=args.threads, memory_release=args.memory_release, max_queue=args.max_queue)
    return run_service(settings, args.host, args.port)


def cmd_doctor(args: argparse.Namespace) -> int:
    from .classroom import doctor

    return doctor.run()


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


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="python -m bitfit_edu", description=__doc__)
    sub = main.add_subparsers(dest="command", required=True)

    params = sub.add_parser("params", help="parameter accounting: total, bias and head counts, %% of the model")
    params.add_argument("--model", action="append", required=True,
                        help="model name or config (repeatable); bundled: bert-base-cased, bert-base-uncased, "
                             "bert-large-cased, roberta-base")
    params.add_argument("--num-labels", type=int, default=2)
    params.set_defaults(func=cmd_params)

    census = sub.add_parser("census", help="bias parameters per paper group and layer")
    census.add_argument("--model", required=True)
    census.set_defaults(func=cmd_census)

    def data_and_profile(p):
        p.add_argument("--profile", choices=list(PROFILES), help="default: $BITFIT_EDU_PROFILE or classroom")
        p.add_argument("--glue-dir", help="classic GLUE folder (default: $GLUE_DIR, else the hub)")

    def bf16_option(p, help_runs):
        p.add_argument("--bf16", action=argparse.BooleanOptionalAction,
                       help=f"bf16 autocast on or off for {help_runs} (default: the profile's; a run in the other "
                            "format is another configuration, with its own record)")

    run = sub.add_parser("run", help="train and evaluate one configuration; its record goes to the results")
    data_and_profile(run)
    run.add_argument("--task", required=True)
    run.add_argument("--method", required=True, help="full, bitfit, frozen, rand_uniform, rand_row_col, "
                                                     "or a variant such as bitfit:b_q+b_m2")
    run.add_argument("--groups", help="bias groups for bitfit, comma separated (b_q,b_m2)")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--learning-rate", "--lr", type=float, help="default: the profile's rate for the method")
    run.add_argument("--epochs", type=int)
    run.add_argument("--train-size", type=int)
    bf16_option(run, "this run")
    run.add_argument("--start", choices=list(STARTS), help="where the encoder starts (default: pretrained; "
                                                          "random or shuffled: notebook 09)")
    run.add_argument("--results", default="results")
    run.add_argument("--deltas", metavar="DIR",
                     help="also save the trained biases and head as DIR/<run id>.safetensors (bitfit and frozen; "
                          "a finished run without one trains again)")
    run.set_defaults(func=cmd_run)

    grid = sub.add_parser("grid", help="run an experiment grid, skipping finished runs (resumable)")
    data_and_profile(grid)
    grid.add_argument("--experiment", required=True, help=", ".join(EXPERIMENTS))
    grid.add_argument("--tasks", help="comma separated (default: the profile's)")
    grid.add_argument("--seeds", help="comma separated (default: the profile's)")
    grid.add_argument("--methods", help="comma separated method labels to keep, e.g. bitfit:b_q+b_m2 "
                                        "(default: every method of the experiment)")
    grid.add_argument("--results", default="results")
    bf16_option(grid, "every run")
    grid.add_argument("--deltas", metavar="DIR", help="also save each BitFit and Frozen run's delta in DIR")
    grid.add_argument("--dry-run", action="store_true", help="list what would run, train nothing")
    grid.add_argument("--worker", metavar="K/N", help="be worker K of N: train every N-th run, starting at the "
                      "K-th, then help with the others' runs left (start N workers, e.g. with OMP_NUM_THREADS=1 "
                      "each, to fill one grid together)")
    grid.set_defaults(func=cmd_grid)

    report = sub.add_parser("report", help="summarise the finished runs of a results folder")
    report.add_argument("--profile", choices=list(PROFILES), help="default: $BITFIT_EDU_PROFILE or classroom")
    report.add_argument("--results", default="results")
    report.set_defaults(func=cmd_report)

    demo = sub.add_parser("demo", help="BitFit vs Full-FT vs Frozen on one small GLUE task, with a table")
    data_and_profile(demo)
    demo.add_argument("--task", help="default: the profile's demo task")
    demo.add_argument("--bf16", action=argparse.BooleanOptionalAction,
                      help="bf16 autocast on or off (default: the profile's where this machine has bfloat16 "
                           "kernels, fp32 elsewhere)")
    demo.add_argument("--results", default="runs/demo")
    demo.add_argument("--deltas", metavar="DIR", help="also save the BitFit and Frozen runs' deltas in DIR")
    demo.set_defaults(func=cmd_demo)

    predict_parser = sub.add_parser("predict", help="answer sentences with saved task deltas on one backbone")
    predict_parser.add_argument("--delta", action="append", required=True, metavar="FILE",
                                help="a delta file (repeat for several tasks on one backbone)")
    predict_parser.add_argument("--tsv", help="a file of sentences, one per line, or pairs in two tab-separated "
                                              "columns")
    predict_parser.add_argument("text", nargs="*", help="sentences; a pair written 'first ||| second'")
    predict_parser.add_argument("--trust-unsigned", action="store_true", help=TRUST_HELP)
    predict_parser.set_defaults(func=cmd_predict)

    serve_parser = sub.add_parser("serve", help="answer requests for every delta of a folder as a web service "
                                                "(mixed-task batches on one backbone)")
    serve_parser.add_argument("--deltas", required=True, metavar="DIR", help="a folder of delta files, one backbone")
    serve_parser.add_argument("--host", default="127.0.0.1")
    serve_parser.add_argument("--port", type=_port, default=8000)
    serve_parser.add_argument("--max-batch", type=int, default=32, help="most rows in one mixed batch (default 32)")
    serve_parser.add_argument("--max-wait-ms", type=float, default=5.0,
                              help="how long a batch's first request waits for others, counted from its arrival, "
                                   "when the last batch had more than one row (default 5 ms)")
    serve_parser.add_argument("--max-length", type=int, help="tokens per text, at most the model's positions; longer "
                              "is truncated (default: 128, or the model's positions if fewer)")
    serve_parser.add_argument("--trust-unsigned", action="store_true", help=TRUST_HELP)
    serve_parser.add_argument("--max-queue", type=int, default=1024,
                              help="requests that may wait for a batch; past it a request gets 503 (default 1024)")
    serve_parser.add_argument("--threads", type=int, help="threads for the model (default: torch's, one per core)")
    serve_parser.add_argument("--memory-release", choices=MEMORY_RELEASE, default=DEFAULT_MEMORY_RELEASE,
                              help="how a batch's freed activations go back to the system: " + "; ".join(
                                  f"{name}: {what}" for name, what in MEMORY_RELEASE.items())
                                   + " (default %(default)s)")
    serve_parser.add_argument("--switching", action="store_true",
                              help="answer one request at a time, switching tasks (a load test's baseline)")
    serve_parser.set_defaults(func=cmd_serve)

    measure = sub.add_parser("measure", help="notebook 09's measurements: linear probes, CKA, the toy vision "
                                             "transformer (probes and cka resume: finished ones are kept)")
    data_and_profile(measure)
    measure.add_argument("what", choices=("probes", "cka", "vision"), help="probes: a probe per layer of each "
                         "start's frozen encoder (minutes); cka: Full-FT and BitFit runs with each layer's CKA "
                         "before against after (about half a core-hour); both in results/expose/<profile>/. "
                         "vision: the toy ViT on digits (minutes; results/expose/vision.json)")
    measure.add_argument("--worker", metavar="K/N", help="be worker K of N (probes and cka)")
    measure.add_argument("--out", help="write here instead of the checkout's results/expose")
    measure.set_defaults(func=cmd_measure)

    doctor_parser = sub.add_parser("doctor", help="is this machine ready for the course? one line per item, OK or "
                                                  "FAIL with the fix")
    doctor_parser.set_defaults(func=cmd_doctor)

    classroom = sub.add_parser("classroom", help="the student edition of the notebooks, and grading submissions")
    classroom_sub = classroom.add_subparsers(dest="classroom_command", required=True)
    student = classroom_sub.add_parser("student", help="write the notebooks without their answers")
    student.add_argument("out", help="folder to write the student notebooks to")
    student.add_argument("--graded", action="store_true",
                         help="write a whole course folder to install, with the package's answer key left out")
    student.set_defaults(func=cmd_student)
    grade_parser = classroom_sub.add_parser("grade", help="execute and grade SUBMISSIONS/<student>/<notebook>.ipynb")
    grade_parser.add_argument("submissions", help="a folder with one sub-folder per student")
    grade_parser.add_argument("--csv", help="where to write the grades (default: SUBMISSIONS/grades.csv)")
    grade_parser.add_argument("--timeout", type=int, default=600, help="seconds per notebook (default: 600)")
    grade_parser.add_argument("--unsafe", action="store_true",
                              help="grade without the bubblewrap sandbox (submissions run as you)")
    grade_parser.set_defaults(func=cmd_grade)
    return main


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    quiet_outputs()  # a run shows its own progress bar; loading models and data shows none
    if not is_main_process():  # torchrun's other processes train alongside the first and stay quiet
        sys.stdout = open(os.devnull, "w")
    stop_on_sigterm()
    try:
        status = args.func(args)
    except BitFitError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Terminated:
        print("\nterminated (SIGTERM): every run that finished is kept; run the same command again to resume "
              "(finished runs are skipped)", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("\ninterrupted: every run that finished is kept; run the same command again to resume "
              "(finished runs are skipped)", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`... | head`): stop quietly, as other command-line tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return status or 0
