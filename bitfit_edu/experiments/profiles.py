"""Profiles: everything that differs between a CI check, a classroom CPU and the paper's GPU runs.

A profile fixes the model, its readout, data sizes, epochs, seeds and learning rates. The rest of the
package reads these values and never asks which profile it is running. Choose one with
``--profile`` on the command line or the ``BITFIT_EDU_PROFILE`` environment variable (notebooks).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

from ..errors import unknown_choice

CLASSROOM_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    model: str
    readout: str
    tasks: tuple[str, ...]
    train_size: int | None  # None: the whole training set
    train_eval_size: int  # fixed training subsample scored each epoch (generalization gap)
    dev_size: int | None  # None: the whole dev set
    epochs: dict[str, int]  # method -> epochs; bias-only methods need more steps than Full-FT
    seeds: tuple[int, ...]
    batch_size: int
    max_length: int
    learning_rates: dict[str, float] = field(default_factory=dict)  # method -> learning rate
    bf16: bool = False
    demo_task: str = "sst2"
    sweep_task: str = "mrpc"  # where the learning-rate sweep runs
    sweep_settings: dict = field(default_factory=dict)  # what the sweep ran with where it differs
    ablation_tasks: tuple[str, ...] | None = None  # None: the profile's tasks
    size_task: str = "sst2"  # where the training-size curve runs
    size_curve: tuple[int, ...] = ()  # its training sizes
    step_range: tuple[int, int] = (600, 2000)  # its fewest and most steps per run (see experiments)
    evaluations: int = 10  # evaluations of a step-budgeted run
    demo_train_size: int | None = None  # the demo's smaller settings (None: as in the grids)
    demo_epochs: int | None = None
    demo_train_eval_size: int | None = None
    claim_seeds: tuple[int, ...] = ()  # the main grid's and b_q+b_m2's seeds (experiments.CLAIM_VARIANTS); (): seeds

    @property
    def model_name(self) -> str:
        """The model's short name for titles: 'all-MiniLM-L6-v2' for 'sentence-transformers/all-MiniLM-L6-v2'."""
        return self.model.split("/")[-1]

    def with_learning_rates(self, learning_rates: dict[str, float]) -> Profile:
        """This profile with other rates for some methods (e.g. the ones a sweep chose)."""
        return replace(self, learning_rates={**self.learning_rates, **learning_rates})

    def learning_rate(self, method: str) -> float:
        """The profile's rate for a method; every bias-only or sparse method shares BitFit's."""
        return self.learning_rates.get(method, self.learning_rates["bitfit"])

    def epochs_for(self, method: str) -> int:
        """The profile's epochs for a method; every bias-only or sparse method shares BitFit's."""
        return self.epochs.get(method, self.epochs["bitfit"])


_BIAS_RATE = 1e-3  # BitFit needs a rate 10-100x higher than Full-FT (paper: 1e-4 to 1e-3)
# LoRA, IA3 and BEFT: each the best rate of its sweep (experiment 'peft_sweep', results/classroom; test_adapters)
_PEFT_RATES = {"lora_r8": 3e-3, "lora_r3": 3e-3, "ia3": 1e-2, "beft": 3e-3, "beft_all": 3e-3}
PROFILES = {p.name: p for p in (
    Profile(
        name="smoke",
        description="seconds: the classroom model on a few dozen real examples (CI, nbval)",
        model=CLASSROOM_MODEL, readout="mean", tasks=("rte", "mrpc", "stsb", "cola", "sst2"),
        train_size=48, train_eval_size=16, dev_size=32, epochs={"full": 2, "bitfit": 2}, seeds=(0,),
        batch_size=16, max_length=64, learning_rates={"full": 5e-5, "bitfit": _BIAS_RATE},
    ),
    Profile(
        name="classroom",
        description="a 2-core CPU: all-MiniLM-L6-v2 (22.7M parameters), up to 2,000 training examples",
        model=CLASSROOM_MODEL, readout="mean", tasks=("rte", "mrpc", "stsb", "cola", "sst2"),
        train_size=2000, train_eval_size=500, dev_size=None, epochs={"full": 5, "bitfit": 10}, seeds=(0, 1, 2),
        batch_size=32, max_length=128, learning_rates={"full": 5e-5, "bitfit": _BIAS_RATE, **_PEFT_RATES},
        bf16=True, demo_train_size=1000, demo_epochs=3, demo_train_eval_size=100,
        ablation_tasks=("rte", "mrpc", "stsb", "cola"),
        sweep_settings={"epochs": 5, "bf16": False},  # how results/classroom's sweep ran
        size_curve=(100, 500, 2000, 10000, 67349),  # 67,349: the whole SST-2 training set
        claim_seeds=(0, 1, 2, 3, 4),
    ),
    Profile(
        name="paper",
        description="a GPU: bert-base-cased, the whole GLUE training sets, the original recipe",
        model="bert-base-cased", readout="cls_pooler",
        tasks=("rte", "mrpc", "stsb", "cola", "sst2", "qnli", "qqp", "mnli"),
        train_size=None, train_eval_size=1000, dev_size=None, epochs={"full": 16, "bitfit": 16},
        seeds=(0, 1, 2, 3, 4), batch_size=8, max_length=128, learning_rates={"full": 2e-5, "bitfit": _BIAS_RATE},
    ),
)}


def get_profile(name: str | None = None) -> Profile:
    """A profile by name; without one, ``BITFIT_EDU_PROFILE`` or 'classroom'."""
    name = name or os.environ.get("BITFIT_EDU_PROFILE") or "classroom"
    if name not in PROFILES:
        raise unknown_choice("profile", name, PROFILES)
    return PROFILES[name]
