"""Number formats: live runs use bf16 autocast only where the hardware has bfloat16 kernels; a run that
asks for bf16 elsewhere computes its products in fp32 from bf16 inputs, which gives PyTorch's bf16 numbers."""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import BertForSequenceClassification

from bitfit_edu.cli import main
from bitfit_edu.core import precision
from bitfit_edu.experiments.profiles import get_profile
from bitfit_edu.experiments.runs import RunConfig


@pytest.fixture
def without_bf16_kernels(monkeypatch):
    monkeypatch.setattr(precision, "native_bf16", lambda: False)


@pytest.mark.parametrize("kernels", [True, False])
def test_demo_runs_use_the_profiles_bf16_only_with_bf16_kernels(kernels, monkeypatch):
    monkeypatch.setattr(precision, "native_bf16", lambda: kernels)
    classroom = get_profile("classroom")
    demo = RunConfig.for_demo(classroom, "mrpc", "bitfit")
    assert (demo.bf16, demo.train_size, demo.epochs) == (kernels, classroom.demo_train_size, classroom.demo_epochs)
    assert demo.number_format == ("bf16 autocast" if kernels else "fp32")
    assert RunConfig.for_demo(classroom, "mrpc", "bitfit", learning_rate=2e-5).learning_rate == 2e-5
    assert not RunConfig.for_demo(get_profile("smoke"), "mrpc", "bitfit").bf16  # smoke never asks for bf16


def products_recorded(model, inputs, emulate: bool) -> list[torch.dtype]:
    """The dtypes of the matrix products that reach PyTorch's kernels in one bf16 autocast step."""
    recorder = ProductRecorder()
    with recorder, precision.bf16_products(emulate):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            model(**inputs).loss.backward()
    return recorder.dtypes


class ProductRecorder(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.dtypes = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in precision.EmulatedBf16Products.products:
            self.dtypes.append(args[-1].dtype)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("product,shapes", [
    (torch.mm, [(48, 96), (96, 40)]),
    (torch.addmm, [(40,), (48, 96), (96, 40)]),
    (torch.bmm, [(3, 48, 96), (3, 96, 40)]),
    (torch.baddbmm, [(3, 48, 40), (3, 48, 96), (3, 96, 40)]),
])
def test_emulated_bf16_products_are_pytorchs_bf16_products(product, shapes, without_bf16_kernels):
    generator = torch.Generator().manual_seed(0)
    inputs = [torch.randn(shape, generator=generator).bfloat16() for shape in shapes]
    reference = product(*inputs)  # PyTorch's own bf16 kernel: slow here, but these matrices are small
    with precision.bf16_products(True):
        emulated = product(*inputs)
    assert emulated.dtype == torch.bfloat16
    one_ulp = reference.float().abs() * 2**-7 + 1e-30  # bf16 keeps 8 significant bits
    assert ((emulated.float() - reference.float()).abs() <= one_ulp).all()  # only the order of the sums differs
    assert (emulated != reference).float().mean() < 0.01


def test_emulation_covers_every_product_forward_and_backward(tiny_model_dir, without_bf16_kernels):
    model = BertForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2)
    inputs = dict(input_ids=torch.randint(5, 25, (4, 12)), labels=torch.tensor([0, 1, 0, 1]))
    autocast_only = products_recorded(model, inputs, emulate=False)
    emulated = products_recorded(model, inputs, emulate=True)
    assert set(autocast_only) == {torch.bfloat16}  # autocast asks for bf16 products ...
    assert len(emulated) == len(autocast_only) and set(emulated) == {torch.float32}  # ... each one is widened


@pytest.mark.parametrize("bf16,kernels,emulated,products", [
    (True, False, True, "bf16, emulated in fp32"),
    (True, True, False, "bf16"),
    (False, False, False, "fp32"),
])
def test_emulation_only_for_bf16_without_kernels(bf16, kernels, emulated, products, monkeypatch):
    monkeypatch.setattr(precision, "native_bf16", lambda: kernels)
    assert isinstance(precision.bf16_products(bf16), precision.EmulatedBf16Products) == emulated
    assert precision.matrix_products(bf16) == products


def test_grid_no_bf16_is_another_set_of_configurations(capsys, tmp_path):
    grid = ["grid", "--profile", "classroom", "--experiment", "ablation", "--tasks", "rte", "--seeds", "0",
            "--results", str(tmp_path), "--dry-run"]
    listed = {}
    for option in ("--bf16", "--no-bf16"):
        assert main([*grid, option]) == 0
        out = capsys.readouterr().out
        listed[option] = [line.split()[2:] for line in out.splitlines() if "to run:" in line]
        assert ("bf16 products on this machine" in out) == (option == "--bf16")
    assert all(line[-2:] == ["bf16", "autocast)"] for line in listed["--bf16"])
    assert all(line[-1] == "fp32)" for line in listed["--no-bf16"])
    assert not {line[0] for line in listed["--bf16"]} & {line[0] for line in listed["--no-bf16"]}
