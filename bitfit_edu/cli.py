"""Command line: ``python -m bitfit_edu {params,census,run,grid,report,demo,predict,serve,measure,doctor,classroom}``;
``-h`` for help.

Reading the arguments needs neither torch nor transformers: the parser is built from light modules, and a
command's code (``commands``) is imported once the command is known, after SIGTERM is caught. So ``doctor``
can report a missing or broken torch, ``--help`` answers at once, and SIGTERM during the imports ends the
program with its usual message.
"""

from __future__ import annotations

import argparse
import os
import sys

from .deploy.memory import DEFAULT_MEMORY_RELEASE, MEMORY_RELEASE
from .errors import BitFitError, Terminated, stop_on_sigterm
from .experiments.profiles import PROFILES


def _port(value: str) -> int:
    """A TCP port number, 0 to 65535 (0: any free port)."""
    if not value.isdigit() or int(value) > 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port: give a number from 0 to 65535")
    return int(value)


# the names of core.starts.STARTS and experiments.grids.EXPERIMENTS, written out here because those modules load
# torch (tests/test_cli.py checks that they agree)
START_NAMES = ("pretrained", "random", "shuffled")
EXPERIMENT_HELP = ("main, ablation, lr_sweep, checks, size_curve, deployment, peft_sweep, peft, figure_1, settle, "
                   "resampled, expose")
PRECISION_HELP = ("the backbone's matrix products in fp32, bf16 or int8 (every bias and head stays fp32); auto: "
                  "bf16 where the CPU or GPU has bf16 kernels, else fp32; see the deployment guide")
TRUST_HELP = ("load deltas of the first format, whose manifest (labels, task) no digest covers, checked by their "
              "reference logits alone")



def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="python -m bitfit_edu", description=__doc__)
    sub = main.add_subparsers(dest="command", required=True)

    params = sub.add_parser("params", help="parameter accounting: total, bias and head counts, %% of the model")
    params.add_argument("--model", action="append", required=True,
                        help="model name or config (repeatable); bundled: bert-base-cased, bert-base-uncased, "
                             "bert-large-cased, roberta-base")
    params.add_argument("--num-labels", type=int, default=2)
    params.set_defaults(command_name="params")

    census = sub.add_parser("census", help="bias parameters per paper group and layer")
    census.add_argument("--model", required=True)
    census.set_defaults(command_name="census")

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
    run.add_argument("--start", choices=START_NAMES, help="where the encoder starts (default: pretrained; "
                                                          "random or shuffled: notebook 09)")
    run.add_argument("--results", default="results")
    run.add_argument("--deltas", metavar="DIR",
                     help="also save the trained biases and head as DIR/<run id>.safetensors (bitfit and frozen; "
                          "a finished run without one trains again)")
    run.set_defaults(command_name="run")

    grid = sub.add_parser("grid", help="run an experiment grid, skipping finished runs (resumable)")
    data_and_profile(grid)
    grid.add_argument("--experiment", required=True, help=EXPERIMENT_HELP)
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
    grid.set_defaults(command_name="grid")

    report = sub.add_parser("report", help="summarise the finished runs of a results folder")
    report.add_argument("--profile", choices=list(PROFILES), help="default: $BITFIT_EDU_PROFILE or classroom")
    report.add_argument("--results", default="results")
    report.set_defaults(command_name="report")

    demo = sub.add_parser("demo", help="BitFit vs Full-FT vs Frozen on one small GLUE task, with a table")
    data_and_profile(demo)
    demo.add_argument("--task", help="default: the profile's demo task")
    demo.add_argument("--bf16", action=argparse.BooleanOptionalAction,
                      help="bf16 autocast on or off (default: the profile's where this machine has bfloat16 "
                           "kernels, fp32 elsewhere)")
    demo.add_argument("--results", default="runs/demo")
    demo.add_argument("--deltas", metavar="DIR", help="also save the BitFit and Frozen runs' deltas in DIR")
    demo.set_defaults(command_name="demo")

    predict_parser = sub.add_parser("predict", help="answer sentences with saved task deltas on one backbone")
    predict_parser.add_argument("--delta", action="append", required=True, metavar="FILE",
                                help="a delta file (repeat for several tasks on one backbone)")
    predict_parser.add_argument("--tsv", help="a file of sentences, one per line, or pairs in two tab-separated "
                                              "columns")
    predict_parser.add_argument("text", nargs="*", help="sentences; a pair written 'first ||| second'")
    predict_parser.add_argument("--trust-unsigned", action="store_true", help=TRUST_HELP)
    predict_parser.add_argument("--precision", default="fp32", metavar="{fp32,bf16,int8,auto}",
                                help=f"{PRECISION_HELP} (default fp32: exact, the same answers on every machine)")
    predict_parser.set_defaults(command_name="predict")

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
    serve_parser.add_argument("--precision", default="auto", metavar="{fp32,bf16,int8,auto}",
                              help=f"{PRECISION_HELP} (default auto: bf16 was measured faster than fp32 behind the "
                                   "service, with bounded memory)")
    serve_parser.add_argument("--max-queue", type=int, default=1024,
                              help="requests that may wait for a batch; past it a request gets 503 (default 1024)")
    serve_parser.add_argument("--threads", type=int,
                              help="threads of each model worker (default: the cores shared among the workers; "
                                   "one worker on a bf16 or int8 backbone gets one fewer, leaving a core to the "
                                   "server)")
    serve_parser.add_argument("--workers", type=int,
                              help="model threads that answer batches at the same time, each with --threads torch "
                                   "threads (default: 2 where there are 2 cores or more, measured faster under load)")
    serve_parser.add_argument("--memory-release", choices=MEMORY_RELEASE, default=DEFAULT_MEMORY_RELEASE,
                              help="how a batch's freed activations go back to the system: " + "; ".join(
                                  f"{name}: {what}" for name, what in MEMORY_RELEASE.items())
                                   + " (default %(default)s)")
    serve_parser.add_argument("--switching", action="store_true",
                              help="answer one request at a time, switching tasks (a load test's baseline)")
    serve_parser.set_defaults(command_name="serve")

    measure = sub.add_parser("measure", help="notebook 09's measurements: linear probes, CKA, the toy vision "
                                             "transformer (probes and cka resume: finished ones are kept)")
    data_and_profile(measure)
    measure.add_argument("what", choices=("probes", "cka", "vision"), help="probes: a probe per layer of each "
                         "start's frozen encoder (minutes); cka: Full-FT and BitFit runs with each layer's CKA "
                         "before against after (about half a core-hour); both in results/expose/<profile>/. "
                         "vision: the toy ViT on digits (minutes; results/expose/vision.json)")
    measure.add_argument("--worker", metavar="K/N", help="be worker K of N (probes and cka)")
    measure.add_argument("--out", help="write here instead of the checkout's results/expose")
    measure.set_defaults(command_name="measure")

    doctor_parser = sub.add_parser("doctor", help="is this machine ready for the course? one line per item, OK or "
                                                  "FAIL with the fix")
    doctor_parser.set_defaults(command_name="doctor")

    classroom = sub.add_parser("classroom", help="the student edition of the notebooks, and grading submissions")
    classroom_sub = classroom.add_subparsers(dest="classroom_command", required=True)
    student = classroom_sub.add_parser("student", help="write the notebooks without their answers")
    student.add_argument("out", help="folder to write the student notebooks to")
    student.add_argument("--graded", action="store_true",
                         help="write a whole course folder to install, with the package's answer key left out")
    student.set_defaults(command_name="student")
    grade_parser = classroom_sub.add_parser("grade", help="execute and grade SUBMISSIONS/<student>/<notebook>.ipynb")
    grade_parser.add_argument("submissions", help="a folder with one sub-folder per student")
    grade_parser.add_argument("--csv", help="where to write the grades (default: SUBMISSIONS/grades.csv)")
    grade_parser.add_argument("--timeout", type=int, default=600, help="seconds per notebook (default: 600)")
    grade_parser.add_argument("--unsafe", action="store_true",
                              help="grade without the bubblewrap sandbox (submissions run as you)")
    grade_parser.set_defaults(command_name="grade")
    return main


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    stop_on_sigterm()
    try:
        status = _dispatch(args)
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


def _dispatch(args: argparse.Namespace) -> int | None:
    """Run the command ``args`` names: doctor before anything imports torch (it checks torch), the others from
    ``commands``, quiet but for their own progress bars."""
    if args.command_name == "doctor":
        from .classroom import doctor

        return doctor.run()
    from . import commands
    from .console import is_main_process, quiet_outputs

    quiet_outputs()  # a run shows its own progress bar; loading models and data shows none
    if not is_main_process():  # torchrun's other processes train alongside the first and stay quiet
        sys.stdout = open(os.devnull, "w")
    return getattr(commands, f"cmd_{args.command_name}")(args)
