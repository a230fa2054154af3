"""The number format of a run: bf16 autocast only where the hardware has bfloat16 kernels.

Under bf16 autocast the matrix products run in bfloat16 while weights and optimizer state stay in fp32.
Where the hardware computes bfloat16 (a CUDA GPU from Ampere on; a CPU whose oneDNN has bf16 kernels:
x86 with AVX-512 or AMX, Arm with BF16 instructions) that makes a step faster. Elsewhere, for example
on a laptop CPU with AVX2 only, PyTorch falls back to scalar code: on a 2-core AVX2 CPU a BitFit step of
the classroom model took 31 s instead of 1 s in fp32 (``benchmarks/step_time.py``). So a live run in a
notebook or the demo picks fp32 there, and a grid run that asks for bf16 stops with a clear message.
"""

from __future__ import annotations

import torch

from .errors import BitFitError


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


def check_bf16(bf16: bool, run_name: str) -> None:
    """Stop a run that asks for bf16 autocast on hardware without bfloat16 kernels, before it starts:
    it would be tens of times slower than fp32, and nothing would say why."""
    if bf16 and not native_bf16():
        raise BitFitError(
            f"{run_name} asks for bf16 autocast, but this machine ({hardware_name()}) has no bfloat16 "
            "kernels: every step would be emulated, tens of times slower than fp32 (benchmarks/step_time.py "
            "measures it). Run it where bf16 has kernels (a CPU with AVX-512 or AMX, a GPU with bf16), as the "
            "committed bf16 runs were, or train in fp32 with --no-bf16 (fp32 runs are separate configurations: "
            "the notebooks' tables read the profile's own)."
        )
