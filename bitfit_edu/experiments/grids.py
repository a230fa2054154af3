"""The experiments: each a list of run configurations built from a profile (main grid, ablations,
learning-rate sweep, checks, training-size curve). ``grid`` trains them; ``ResultStore.load`` reads
their finished records, without the training engine.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import replace

import pandas as pd

from ..core import adapters
from ..core.methods import parse_label, readable
from ..errors import BitFitError, unknown_choice
from .profiles import Profile
from .results import ResultStore
from .runs import RunConfig, RunRecord

MAIN = ("full", "bitfit", "frozen")
ABLATION = ("bitfit:b_q+b_m2", "bitfit:b_m2", "bitfit:b_q", "rand_uniform", "rand_row_col")
EXPERIMENTS = ("main", "ablation", "lr_sweep", "checks", "size_curve", "deployment", "peft_sweep", "peft", "figure_1",
               "settle", "resampled", "expose")
SIZE_CURVE = ("full", "bitfit")
LR_SWEEP = {"full": (2e-5, 5e-5, 1e-4, 2e-4), "bitfit": (1e-4, 3e-4, 1e-3, 3e-3), "frozen": (1e-4, 1e-3, 1e-2)}
# LoRA, IA3 and BEFT (adapters): four rates each around what their papers used (LoRA on RoBERTa-base 4e-4
# to 5e-4, IA3 3e-3), swept like LR_SWEEP; the profile's rate for each is the sweep's best (test_adapters)
PEFT = tuple(adapters.PEFT_METHODS)
PEFT_SWEEP = {"lora_r8": (1e-4, 3e-4, 1e-3, 3e-3), "lora_r3": (1e-4, 3e-4, 1e-3, 3e-3),
              "ia3": (1e-3, 3e-3, 1e-2, 3e-2), "beft": (3e-4, 1e-3, 3e-3, 1e-2), "beft_all": (3e-4, 1e-3, 3e-3, 1e-2)}
PEFT_SEEDS = 3  # the comparison's seeds: the profile's first three
# The variants behind the "similar" claims (claims.MARGINS), whose equivalence tests need more seeds than the
# other grids: they run the profile's claim_seeds (issue #23)
CLAIM_VARIANTS = (*MAIN, "bitfit:b_q+b_m2")
# The runs that settle open claims (issue #32, experiment 'settle'), their seeds declared with the primary
# protocol and the decision rule (claims.PRIMARY_PROTOCOL), before any of them ran, cheapest first:
# 1. the size curve's small end, both methods;  2. LoRA at 1e-2 in the sweep (3e-3, its best, was the sweep's
# edge);  3. all biases and b_q + b_m2 on the ablation tasks;  4. random rows/columns.
SETTLE_SEEDS = {"size_curve": tuple(range(3, 10)), "bias_subsets": tuple(range(5, 10)), "rand_row_col": (3, 4)}
SETTLE_SIZES = (100, 500)
SETTLE_LORA_RATE = 1e-2
# Expose or learn? (issue #43, notebook 09): the main grid's three methods from an encoder that did not learn
# from pre-training, on a task close to the classroom model's own training (STS-B: it was trained to embed
# similar sentences close together) and one far from it (CoLA: grammatical acceptability). The pre-trained arm
# is the main grid's own runs of these tasks (same settings, same seeds). Declared with its claims
# (evidence.expose) before any of its runs; the random start, which the claims need most, runs first.
EXPOSE_TASKS = ("stsb", "cola")
EXPOSE_STARTS = ("random", "shuffled")
# Planned for a GPU (issue #32): BitFit and Full-FT where each seed also draws the training subsample
RESAMPLED_SEEDS = tuple(range(10))


def experiment_configs(profile: Profile, experiment: str, tasks: Iterable[str] | None = None,
                       seeds: Iterable[int] | None = None) -> list[RunConfig]:
    """The runs of a named experiment, seed by seed (a grid stopped early holds whole seeds first).

    'main': Full-FT, BitFit, Frozen on the profile's tasks. 'ablation': the bias subsets and random
    baselines on the profile's ablation tasks. 'lr_sweep': every method family at several rates on the
    profile's sweep task with its sweep settings, first seed only unless ``seeds`` says otherwise (the
    paper, too, searched rates minimally). 'peft_sweep' and 'peft': the same for LoRA, IA3 and BEFT
    (``adapters``), then each at its rate on the profile's tasks, first ``PEFT_SEEDS`` seeds, with the main
    grid's sizes and bias-only epochs. 'resampled': Full-FT and BitFit of the main grid, each seed also drawing
    the training subsample. 'checks', 'size_curve', 'deployment', 'figure_1' and 'settle': see
    :func:`check_configs`, :func:`size_curve_configs`, :func:`deployment_configs`, :func:`figure_1_configs` and
    :func:`settle_configs`.
    """
    if experiment == "deployment":
        return deployment_configs(profile, tasks)
    if experiment in ("checks", "size_curve", "figure_1") and tasks:
        raise BitFitError(f"experiment {experiment!r} runs on the profile's own task: drop the task list")
    if experiment == "figure_1":
        return figure_1_configs(profile, seeds)
    if experiment == "settle":
        if tasks or seeds:
            raise BitFitError("experiment 'settle' runs the tasks and seeds declared for it (grids.SETTLE_SEEDS): "
                              "drop --tasks and --seeds")
        return settle_configs(profile)
    if experiment == "expose":
        if tasks or seeds:
            raise BitFitError("experiment 'expose' runs the tasks and seeds declared for it (grids.EXPOSE_TASKS): "
                              "drop --tasks and --seeds")
        return expose_configs(profile)
    if experiment == "resampled":
        return [replace(config, data_seed=config.seed)
                for config in experiment_configs(profile, "main", tasks, seeds or RESAMPLED_SEEDS)
                if config.method in ("full", "bitfit")]
    if experiment == "checks":
        return check_configs(profile)
    if experiment == "size_curve":
        return size_curve_configs(profile, seeds)
    if experiment == "main":
        runs = [(label, None) for label in MAIN]
    elif experiment == "ablation":
        runs = [(label, None) for label in ABLATION]
    elif experiment == "peft":
        runs = [(label, None) for label in PEFT]
    elif experiment in ("lr_sweep", "peft_sweep"):
        # rate by rate across the families, so that a sweep stopped early has covered each of them
        rates_of = LR_SWEEP if experiment == "lr_sweep" else PEFT_SWEEP
        runs = [(label, rates[i]) for i in range(max(map(len, rates_of.values())))
                for label, rates in rates_of.items() if i < len(rates)]
    else:
        raise unknown_choice("experiment", experiment, EXPERIMENTS)
    sweep = experiment in ("lr_sweep", "peft_sweep")
    default_tasks = {"lr_sweep": (profile.sweep_task,), "peft_sweep": (profile.sweep_task,),
                     "ablation": profile.ablation_tasks or profile.tasks}
    tasks = tuple(tasks or default_tasks.get(experiment, profile.tasks))

    def seeds_of(label: str) -> tuple[int, ...]:
        if seeds is not None:
            return tuple(seeds)
        if sweep:
            return profile.seeds[:1]
        if experiment == "peft":
            return profile.seeds[:PEFT_SEEDS]
        return (profile.claim_seeds or profile.seeds) if label in CLAIM_VARIANTS else profile.seeds

    overrides = profile.sweep_settings if sweep else {}
    every_seed = sorted({seed for label, _ in runs for seed in seeds_of(label)})
    parsed = {label: parse_label(label) for label, _ in runs}
    return [RunConfig.from_profile(profile, task, parsed[label][0], groups=parsed[label][1], seed=seed,
                                   learning_rate=lr, **overrides)
            for seed in every_seed for task in tasks for label, lr in runs if seed in seeds_of(label)]


def figure_1_configs(profile: Profile, seeds: Iterable[int] | None = None) -> list[RunConfig]:
    """The main grid's BitFit runs on RTE in fp32, the profile's seeds: the paper's Figure 1 in exact arithmetic,
    where b_k's gradient vanishes (under bf16 autocast rounding moves it; notebook 5)."""
    seeds = tuple(seeds if seeds is not None else profile.seeds)
    return [replace(config, bf16=False) for config in experiment_configs(profile, "main", tasks=["rte"], seeds=seeds)
            if config.method == "bitfit"]


def settle_configs(profile: Profile) -> list[RunConfig]:
    """The runs declared to settle open claims (``SETTLE_SEEDS``), in their declared order."""
    small_end = [config for config in size_curve_configs(profile, SETTLE_SEEDS["size_curve"])
                 if config.train_size in SETTLE_SIZES]
    lora = [RunConfig.from_profile(profile, profile.sweep_task, method, seed=profile.seeds[0],
                                   learning_rate=SETTLE_LORA_RATE, **profile.sweep_settings)
            for method in ("lora_r8", "lora_r3")]
    tasks = profile.ablation_tasks or profile.tasks

    def runs_of(label: str, seeds: tuple[int, ...]) -> list[RunConfig]:
        experiment = "main" if label in MAIN else "ablation"
        return [config for seed in seeds for config in experiment_configs(profile, experiment, tasks, [seed])
                if config.label == label]

    subsets = [config for seed in SETTLE_SEEDS["bias_subsets"]
               for label in ("bitfit", "bitfit:b_q+b_m2") for config in runs_of(label, (seed,))]
    return small_end + lora + subsets + runs_of("rand_row_col", SETTLE_SEEDS["rand_row_col"])


def expose_configs(profile: Profile, starts: Iterable[str] = EXPOSE_STARTS) -> list[RunConfig]:
    """The main grid's runs of ``EXPOSE_TASKS`` (its claim seeds) from each of ``starts``, start by start and
    seed by seed; with 'pretrained' among ``starts``, the main grid's own runs (``core.starts``)."""
    pretrained = experiment_configs(profile, "main", EXPOSE_TASKS)
    return [replace(config, start=start).validated() for start in starts for config in pretrained]


def with_settled(profile: Profile, configs: list[RunConfig]) -> list[RunConfig]:
    """``configs`` and the runs of experiment 'settle' that extend them with more seeds (the same
    configuration but for its seed): what a notebook reads to judge a claim on every seed declared for it."""
    extended = {replace(config, seed=0) for config in configs}
    return configs + [config for config in settle_configs(profile)
                      if replace(config, seed=0) in extended and config not in configs]


def deployment_configs(profile: Profile, tasks: Iterable[str] | None = None) -> list[RunConfig]:
    """One BitFit run per task at the demo's sizes, seed 0, in the profile's number format: the task deltas
    that notebook 6 serves on one backbone (train them with ``--deltas``)."""
    return [RunConfig.for_demo(profile, task, "bitfit", bf16=profile.bf16) for task in tasks or profile.tasks]


def check_configs(profile: Profile) -> list[RunConfig]:
    """The runs that justify two settings of a profile, on its sweep task, seed 0, at the swept rates:
    BitFit for three times the sweep's epochs (where does its dev curve level off?) and Full-FT as in the
    sweep, both in the profile's number format. Beside the sweep's own runs they show whether that format
    (e.g. bf16 autocast) changes the scores: with a constant learning rate, the first epochs of a run do not
    depend on how many follow."""
    sweep_epochs = profile.sweep_settings.get("epochs", profile.epochs_for("bitfit"))
    return [RunConfig.from_profile(profile, profile.sweep_task, "bitfit", epochs=3 * sweep_epochs),
            RunConfig.from_profile(profile, profile.sweep_task, "full", epochs=sweep_epochs)]


def size_curve_configs(profile: Profile, seeds: Iterable[int] | None = None) -> list[RunConfig]:
    """Full-FT and BitFit on the profile's size task at each of its training sizes, seed by seed.

    A run trains its method's usual epochs, unless those are fewer steps than ``profile.step_range[0]``
    (a few epochs of 100 examples are a handful of steps: that would starve the small sizes) or more than
    ``step_range[1]`` (the whole of a large training set, many times over, is CPU-hours); then it trains
    exactly that many steps instead, evaluated ``profile.evaluations`` times. A run whose epochs fit the
    range is the same configuration as in the other grids, so finished runs are reused.
    """
    fewest, most = profile.step_range
    configs = []
    for seed in seeds if seeds is not None else profile.seeds:
        for size in profile.size_curve:
            for method in SIZE_CURVE:
                steps = profile.epochs_for(method) * math.ceil(size / profile.batch_size)
                budget = None if fewest <= steps <= most else min(max(steps, fewest), most)
                overrides = {} if budget is None else {"max_steps": budget,
                                                       "eval_every": budget // profile.evaluations}
                configs.append(RunConfig.from_profile(profile, profile.size_task, method, seed=seed,
                                                      train_size=size, **overrides))
    return configs


def counterparts(record: RunRecord, store: ResultStore, epochs: int) -> dict[str, RunRecord]:
    """A re-run with emulated bf16 products beside the runs it repeats: the same configuration with bf16
    kernels for ``epochs`` (the grid's), and in fp32. Only those that have finished are returned."""
    config = record.config
    runs = {"bf16, emulated": record, "bf16, kernels": store.finished(replace(config, epochs=epochs)),
            "fp32": store.finished(replace(config, bf16=False))}
    return {number_format: run for number_format, run in runs.items() if run}


def grid_progress(configs: list[RunConfig], store: ResultStore) -> pd.DataFrame:
    """Finished runs over all runs ('2/3') per method variant (rows, in grid order, by display name) and
    task (columns)."""
    rows = pd.DataFrame([{"method": c.label, "task": c.task, "finished": store.finished(c) is not None}
                         for c in configs])
    counts = rows.groupby(["method", "task"], sort=False)["finished"].agg(["sum", "size"])
    cells = (counts["sum"].astype(str) + "/" + counts["size"].astype(str)).unstack()
    cells = cells.reindex(index=list(dict.fromkeys(rows["method"])), columns=list(dict.fromkeys(rows["task"])))
    return readable(cells)
