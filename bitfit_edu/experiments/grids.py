"""The experiments by name (``EXPERIMENT_BUILDERS``: a name -> the builder of its run configurations, from a
profile): the main grid, ablations,
learning-rate sweep, checks, training-size curve). ``grid`` trains them; ``ResultStore.load`` reads
their finished records, without the training engine.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import replace

import pandas as pd

from ..core import adapters
from ..core.methods import display_name, parse_label, readable
from ..errors import BitFitError, unknown_choice
from .profiles import Profile
from .results import ResultStore
from .runs import RunConfig, RunRecord

MAIN = ("full", "bitfit", "frozen")
ABLATION = ("bitfit:b_q+b_m2", "bitfit:b_m2", "bitfit:b_q", "rand_uniform", "rand_row_col")
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
    """The runs of a named experiment (``EXPERIMENT_BUILDERS``), seed by seed (a grid stopped early holds whole
    seeds first), on ``tasks`` and ``seeds`` where given (default: the experiment's own)."""
    if experiment not in EXPERIMENT_BUILDERS:
        raise unknown_choice("experiment", experiment, EXPERIMENTS)
    return EXPERIMENT_BUILDERS[experiment](profile, tuple(tasks) if tasks else None,
                                           None if seeds is None else tuple(seeds))


Builder = Callable[..., list[RunConfig]]  # (profile, tasks or None, seeds or None) -> the experiment's runs


def method_grid(profile: Profile, runs: list[tuple[str, float | None]], tasks: tuple[str, ...],
                seeds_of: Callable[[str], tuple[int, ...]], overrides: dict | None = None) -> list[RunConfig]:
    """Each (method label, learning rate or None: the profile's) of ``runs`` on each task, with the seeds
    ``seeds_of(label)`` gives it, seed by seed, then task by task, in the order of ``runs``."""
    every_seed = sorted({seed for label, _ in runs for seed in seeds_of(label)})
    parsed = {label: parse_label(label) for label, _ in runs}
    return [RunConfig.from_profile(profile, task, parsed[label][0], groups=parsed[label][1], seed=seed,
                                   learning_rate=rate, **(overrides or {}))
            for seed in every_seed for task in tasks for label, rate in runs if seed in seeds_of(label)]


def claim_seeds(profile: Profile, seeds: tuple[int, ...] | None) -> Callable[[str], tuple[int, ...]]:
    """``seeds`` where given; else the profile's claim seeds for the variants behind the "similar" claims
    (``CLAIM_VARIANTS``) and its seeds for the others."""
    def seeds_of(label: str) -> tuple[int, ...]:
        if seeds is not None:
            return seeds
        return (profile.claim_seeds or profile.seeds) if label in CLAIM_VARIANTS else profile.seeds
    return seeds_of


def main_configs(profile: Profile, tasks=None, seeds=None) -> list[RunConfig]:
    """Full-FT, BitFit and Frozen on the profile's tasks."""
    return method_grid(profile, [(label, None) for label in MAIN], tasks or profile.tasks, claim_seeds(profile, seeds))


def ablation_configs(profile: Profile, tasks=None, seeds=None) -> list[RunConfig]:
    """The bias subsets and the random baselines on the profile's ablation tasks."""
    return method_grid(profile, [(label, None) for label in ABLATION],
                       tasks or profile.ablation_tasks or profile.tasks, claim_seeds(profile, seeds))


def peft_configs(profile: Profile, tasks=None, seeds=None) -> list[RunConfig]:
    """LoRA, IA3 and BEFT (``adapters``), each at its rate, on the profile's tasks, its first ``PEFT_SEEDS``
    seeds, with the main grid's sizes and bias-only epochs."""
    return method_grid(profile, [(label, None) for label in PEFT], tasks or profile.tasks,
                       lambda label: seeds if seeds is not None else profile.seeds[:PEFT_SEEDS])


def sweep(rates_of: dict[str, tuple[float, ...]]) -> Builder:
    """A learning-rate sweep: every method family at its rates on the profile's sweep task with its sweep
    settings, first seed only unless told otherwise (the paper, too, searched rates minimally), rate by rate
    across the families, so that a sweep stopped early has covered each of them."""
    def configs(profile: Profile, tasks=None, seeds=None) -> list[RunConfig]:
        runs = [(label, rates[i]) for i in range(max(map(len, rates_of.values())))
                for label, rates in rates_of.items() if i < len(rates)]
        return method_grid(profile, runs, tasks or (profile.sweep_task,),
                           lambda label: seeds if seeds is not None else profile.seeds[:1], profile.sweep_settings)
    return configs


def resampled_configs(profile: Profile, tasks=None, seeds=None) -> list[RunConfig]:
    """Full-FT and BitFit of the main grid, each seed also drawing the training subsample."""
    return [replace(config, data_seed=config.seed) for config in main_configs(profile, tasks, seeds or RESAMPLED_SEEDS)
            if config.method in ("full", "bitfit")]


def on_its_own_task(experiment: str, build: Callable[[Profile, tuple[int, ...] | None], list[RunConfig]]) -> Builder:
    """An experiment that runs on the profile's own task: a task list is an error."""
    def configs(profile: Profile, tasks=None, seeds=None) -> list[RunConfig]:
        if tasks:
            raise BitFitError(f"experiment {experiment!r} runs on the profile's own task: drop the task list")
        return build(profile, seeds)
    return configs


def as_declared(experiment: str, build: Callable[[Profile], list[RunConfig]], where: str) -> Builder:
    """An experiment whose tasks and seeds were declared before its runs: a task or seed list is an error."""
    def configs(profile: Profile, tasks=None, seeds=None) -> list[RunConfig]:
        if tasks or seeds:
            raise BitFitError(f"experiment {experiment!r} runs the tasks and seeds declared for it ({where}): "
                              "drop --tasks and --seeds")
        return build(profile)
    return configs


def figure_1_configs(profile: Profile, seeds: Iterable[int] | None = None) -> list[RunConfig]:
    """The main grid's BitFit runs on RTE in fp32, the profile's seeds: the paper's Figure 1 in exact arithmetic,
    where b_k's gradient vanishes (under bf16 autocast rounding moves it; notebook 5)."""
    seeds = tuple(seeds if seeds is not None else profile.seeds)
    return [replace(config, bf16=False) for config in main_configs(profile, ("rte",), seeds)
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
        build = main_configs if label in MAIN else ablation_configs
        return [config for seed in seeds for config in build(profile, tasks, (seed,)) if config.label == label]

    subsets = [config for seed in SETTLE_SEEDS["bias_subsets"]
               for label in ("bitfit", "bitfit:b_q+b_m2") for config in runs_of(label, (seed,))]
    return small_end + lora + subsets + runs_of("rand_row_col", SETTLE_SEEDS["rand_row_col"])


def expose_configs(profile: Profile, starts: Iterable[str] = EXPOSE_STARTS) -> list[RunConfig]:
    """The main grid's runs of ``EXPOSE_TASKS`` (its claim seeds) from each of ``starts``, start by start and
    seed by seed; with 'pretrained' among ``starts``, the main grid's own runs (``core.starts``)."""
    pretrained = main_configs(profile, EXPOSE_TASKS)
    return [replace(config, start=start).validated() for start in starts for config in pretrained]


def with_settled(profile: Profile, configs: list[RunConfig]) -> list[RunConfig]:
    """``configs`` and the runs of experiment 'settle' that extend them with more seeds (the same
    configuration but for its seed): what a notebook reads to judge a claim on every seed declared for it."""
    extended = {replace(config, seed=0) for config in configs}
    return configs + [config for config in settle_configs(profile)
                      if replace(config, seed=0) in extended and config not in configs]


def ablation_comparison(profile: Profile) -> list[RunConfig]:
    """What notebook 04 compares: the main grid's runs on the ablation tasks (all biases, Full-FT, Frozen)
    beside the ablation grid, with the runs that settle its open claims (``with_settled``)."""
    return with_settled(profile, main_configs(profile, profile.ablation_tasks or None) + ablation_configs(profile))


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


# The experiments, by name: each a builder (profile, tasks or None, seeds or None) -> its runs
EXPERIMENT_BUILDERS: dict[str, Builder] = {
    "main": main_configs,
    "ablation": ablation_configs,
    "lr_sweep": sweep(LR_SWEEP),
    "checks": on_its_own_task("checks", lambda profile, seeds: check_configs(profile)),
    "size_curve": on_its_own_task("size_curve", size_curve_configs),
    "deployment": lambda profile, tasks=None, seeds=None: deployment_configs(profile, tasks),
    "peft_sweep": sweep(PEFT_SWEEP),
    "peft": peft_configs,
    "figure_1": on_its_own_task("figure_1", figure_1_configs),
    "settle": as_declared("settle", settle_configs, "grids.SETTLE_SEEDS"),
    "resampled": resampled_configs,
    "expose": as_declared("expose", expose_configs, "grids.EXPOSE_TASKS"),
}
EXPERIMENTS = tuple(EXPERIMENT_BUILDERS)


def completeness(configs: list[RunConfig], missing: list[RunConfig]) -> str:
    """One sentence for a notebook: every declared run of a grid is in, or which are missing, so that what reads
    them is interim (a verdict on fewer seeds than declared can still change)."""
    if not missing:
        return f"All {len(configs)} declared runs are in: what follows reads the whole grid."
    parts = []
    for label in dict.fromkeys(config.label for config in missing):
        runs = [config for config in missing if config.label == label]
        declared = sum(config.label == label for config in configs)
        tasks = ", ".join(dict.fromkeys(config.task_spec.folder for config in runs))
        parts.append(f"{display_name(label)}: {len(runs)} of its {declared} runs ({tasks})")
    return (f"Interim: {len(missing)} of the {len(configs)} declared runs are not in yet ({'; '.join(parts)}). "
            "Every result below that reads them can still change.")


def comparison_configs(profile: Profile, labels: Iterable[str], tasks: Iterable[str],
                       seeds: Iterable[int]) -> list[RunConfig]:
    """The runs of a comparison between method variants ``labels`` on ``tasks`` with ``seeds``, as the main,
    ablation and peft grids configure them (a power plan's runs: ``power.open_claims``), seed by seed."""
    labels, tasks, seeds = set(labels), tuple(tasks), tuple(seeds)
    found = [config for build in (main_configs, ablation_configs, peft_configs)
             for config in build(profile, tasks, seeds) if config.label in labels]
    return sorted(dict.fromkeys(found), key=lambda config: config.seed)
