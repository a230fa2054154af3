"""The number format of a run: fp32, or bf16 autocast with hardware kernels or emulated products.

Under bf16 autocast the matrix products run in bfloat16 while weights and optimizer state stay in fp32.
Where the hardware computes bfloat16 (a CUDA GPU from Ampere on; a CPU whose oneDNN has bf16 kernels:
x86 with AVX-512 or AMX, Arm with BF16 instructions) that makes a step faster. Elsewhere, for example
on a laptop CPU with AVX2 only, PyTorch falls back to scalar code: on a 2-core AVX2 CPU a BitFit training
step of the classroom model took 35 s instead of 3 s in fp32 (``benchmarks/step_time.py``). There a run in bf16
computes its products the way the kernels would, in fp32 from bf16 inputs (``EmulatedBf16Products``):
the same numbers at about the speed of fp32 training, so a grid in bf16 can go on on any CPU. A live
run in a notebook or the demo simply picks fp32 there, which is a little faster still.
"""

from __future__ import annotations

import contextlib
import platform
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten


def native_bf16() -> bool:
    """Whether this machine computes bfloat16 matrix products in hardware (see the module docstring).
    On a CPU this is the check ATen makes before sending a bf16 product to oneDNN."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported(including_emulation=False)
    return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def hardware_name() -> str:
    """The accelerator or the CPU's vector instructions, for messages: 'NVIDIA H100', 'CPU (AVX2)'."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return f"CPU ({torch.backends.cpu.get_cpu_capability()})"


def cpu_name() -> str:
    """The CPU's model name with its family and model numbers ('AMD EPYC, family 26, model 2'): two machines
    with the same name and vector instructions can differ in their bf16 speed by generation."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or "unknown CPU"
    found = {key.strip(): value.strip() for key, _, value in (line.partition(":") for line in lines[:30])}
    name = found.get("model name", "unknown CPU")
    return f"{name}, family {found.get('cpu family', '?')}, model {found.get('model', '?')}"


class EmulatedBf16Products(TorchDispatchMode):
    """bf16 matrix products computed as oneDNN computes them, on hardware without its bf16 kernels.

    Under autocast a product C = A B gets bfloat16 inputs A and B. oneDNN multiplies them exactly (a product
    of two bf16 numbers fits in fp32), sums in fp32 and rounds C to bf16. Here A and B are widened to fp32,
    multiplied by the fp32 kernels, and C is rounded to bf16: the same numbers, up to the order of the sums
    (``tests/test_precision.py`` checks it against PyTorch's own bf16 product). Every other operation of
    autocast is untouched. It sits below autograd, so the backward pass's products are covered too.
    """

    products = {aten.mm.default, aten.addmm.default, aten.bmm.default, aten.baddbmm.default}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self.products and any(isinstance(a, torch.Tensor) and a.dtype == torch.bfloat16 for a in args):
            widened = [a.float() if isinstance(a, torch.Tensor) else a for a in args]
            return func(*widened, **kwargs).to(torch.bfloat16)
        return func(*args, **kwargs)


def bf16_products(bf16: bool) -> contextlib.AbstractContextManager:
    """The context a run trains and evaluates in: with bf16 autocast on hardware without bfloat16 kernels,
    ``EmulatedBf16Products``; otherwise nothing changes."""
    return EmulatedBf16Products() if bf16 and not native_bf16() else contextlib.nullcontext()


def matrix_products(bf16: bool) -> str:
    """How a run computes its matrix products, for its record: 'fp32', 'bf16' (hardware kernels) or
    'bf16, emulated in fp32' (``bf16_products`` standing in for missing kernels)."""
    if not bf16:
        return "fp32"
    return "bf16" if native_bf16() else "bf16, emulated in fp32"
