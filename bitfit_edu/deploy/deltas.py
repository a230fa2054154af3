"""A task as a file: the biases BitFit trained and the task head, kept apart from the frozen backbone.

BitFit leaves every weight matrix and LayerNorm gain of the pre-trained encoder untouched, so what a task
adds is a few kilobytes: the trained bias vectors (b_q, b_m2, ...) and the head (W_c, b_c). A delta file
holds exactly those tensors, as safetensors, named as in the model (``bert.encoder.layer.0.attention.self.
query.bias``, ``classifier.weight``...). Its header carries a JSON manifest: the model and a hash of the
backbone it was trained on, the readout, the task and its labels, the method and its bias groups, every
tensor's name and shape, the package version, and a few reference inputs with the logits the fine-tuned
model gave them, so that anyone who loads the delta can check they get the same model back.

``load_delta`` checks everything before it keeps anything: a delta made for another backbone, a missing
or extra tensor, a wrong shape or a corrupt file each get one clear error, and the backbone is left as it
was. A delta cannot be silently corrupted either: its manifest carries a SHA-256 of the manifest itself and
of its tensors (``content_sha256``), checked on reading, so an edited label, task, backbone or tensor is
refused; a tensor with a NaN or an infinity is refused; and every delta must carry reference logits, which
the backbone with the delta must give to ``REFERENCE_TOLERANCE``. Deltas of the first format, whose digest
covered the tensors alone (``tensors_sha256``) or that had none, are refused unless the user trusts them
(``--trust-unsigned``); then every one of their reference rows is checked.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save_file
from torch import nn

from ..core.biases import BiasTerm, bias_census, head_parameters
from ..errors import BitFitError

FORMAT = "bitfit_edu.delta/2"  # the manifest is covered by the digest
READABLE_FORMATS = ("bitfit_edu.delta/1", FORMAT)
DELTA_METHODS = ("bitfit", "frozen")  # the methods whose runs change only biases and the head
MANIFEST_KEY = "bitfit_edu.delta"
TRUST_UNSIGNED = "BITFIT_EDU_TRUST_UNSIGNED_DELTAS"  # "1" (or serve/predict --trust-unsigned): load first-format
# deltas, whose manifest no digest covers, checked by their reference logits alone
LARGEST_DELTA = 64 * 2**20  # bytes; BERT-large's biases and a head take about 1 MiB
REFERENCE_TOLERANCE = 1e-4  # largest |logit difference| from the reference logits a loaded delta may give


@dataclass(frozen=True)
class Reference:
    """A few tokenized inputs and the logits the fine-tuned model gave them (fp32, eval mode)."""

    inputs: dict[str, list[list[int]]]  # input_ids, attention_mask (and token_type_ids), padded
    logits: list[list[float]]


@dataclass(frozen=True)
class DeltaManifest:
    """What a delta file says about itself."""

    model: str  # the backbone's name on the hub, e.g. 'sentence-transformers/all-MiniLM-L6-v2'
    backbone_sha256: str  # ``backbone_digest`` of the backbone it was trained on
    readout: str
    task: str
    label_names: tuple[str, ...]  # () for a regression task
    num_labels: int
    label: str  # the method label: 'bitfit', 'bitfit:b_q+b_m2', 'frozen'
    tensors: dict[str, list[int]]  # name -> shape
    package_version: str
    reference: Reference | None = None
    tensors_sha256: str | None = None  # format 1: ``tensors_digest`` of its tensors alone (or None)
    content_sha256: str | None = None  # ``content_digest`` of this manifest and the tensors; None in format 1
    format: str = FORMAT

    @property
    def vouched(self) -> bool:
        """Whether a digest covers the manifest as well as the tensors (format 2)."""
        return self.content_sha256 is not None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str) -> DeltaManifest:
        try:
            stored = json.loads(text)
            if stored.get("format") not in READABLE_FORMATS:
                raise BitFitError(f"{source} is a delta of format {stored.get('format')!r}; this version of "
                                  f"bitfit_edu reads {', '.join(READABLE_FORMATS)}: update the package")
            reference = stored.pop("reference", None)
            return cls(**{**stored, "label_names": tuple(stored["label_names"]),
                          "reference": Reference(**reference) if reference else None})
        except (json.JSONDecodeError, TypeError, KeyError, AttributeError) as error:
            raise BitFitError(f"corrupt delta file {source}: its manifest cannot be read ({error}). "
                              "Save the delta again from its run") from None


def backbone_digest(model: nn.Module, census: Iterable[BiasTerm] | None = None) -> str:
    """SHA-256 of everything a delta does not replace: every encoder parameter but the bias terms (names,
    shapes and fp32 values, in name order). Equal digests: the same pre-trained backbone. ``census``: the
    model's bias terms, if already taken."""
    head = head_parameters(model)
    biases = {term.name for term in (census or bias_census(model))}
    digest = hashlib.sha256()
    for name, parameter in sorted(model.named_parameters()):
        if name in head or name in biases:
            continue
        digest.update(f"{name}:{tuple(parameter.shape)};".encode())
        digest.update(parameter.detach().to(torch.float32).cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a delta's tensors: names, dtypes, shapes and bytes, in name order."""
    digest = hashlib.sha256()
    for name, tensor in sorted(tensors.items()):
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy())  # its buffer, not a copy
    return digest.hexdigest()


def content_digest(manifest: DeltaManifest, tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a delta's manifest (every field but this digest) and of its tensors (``tensors_digest``)."""
    unsigned = replace(manifest, content_sha256=None).to_json()
    return hashlib.sha256(f"{unsigned}\n{tensors_digest(tensors)}".encode()).hexdigest()


def _signed(manifest: DeltaManifest, tensors: dict[str, torch.Tensor]) -> DeltaManifest:
    """``manifest`` for ``tensors`` in the current format: their shapes listed, and the digest of both."""
    manifest = replace(manifest, tensors={name: list(t.shape) for name, t in tensors.items()}, tensors_sha256=None,
                       format=FORMAT, content_sha256=None)
    return replace(manifest, content_sha256=content_digest(manifest, tensors))


def delta_tensors(model: nn.Module, census: Iterable[BiasTerm] | None = None) -> dict[str, torch.Tensor]:
    """What a task trained into ``model`` (``methods.prepare`` marks it): its bias terms and its head.
    Only a bias-only method (BitFit and its subsets, or Frozen: the head alone) has a delta."""
    biases = {term.name for term in (census or bias_census(model))}
    head = head_parameters(model)
    trained = {name: p for name, p in model.named_parameters() if p.requires_grad}
    other = sorted(set(trained) - biases - set(head))
    if other:
        raise BitFitError(f"this model trained more than biases and its head ({other[0]}, and "
                          f"{len(other) - 1} more): only BitFit and Frozen runs have a bias delta")
    return {name: p.detach().to(torch.float32).cpu().contiguous() for name, p in trained.items()}


def save_delta(model: nn.Module, path: str | Path, manifest: DeltaManifest,
               census: Iterable[BiasTerm] | None = None) -> Path:
    """Write the delta of ``model`` to ``path`` (``.safetensors``); ``manifest.tensors`` is filled in here."""
    tensors = delta_tensors(model, census)
    if manifest.reference is None:
        raise BitFitError("a delta is saved with reference logits (deltas.reference_for), by which whoever loads "
                          "it checks that they get the same model back")
    manifest = _signed(manifest, tensors)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, path, metadata={MANIFEST_KEY: manifest.to_json()})
    os.chmod(path, 0o644)  # readable by all, like any other file a run leaves
    return path


def read_delta(path: str | Path) -> tuple[DeltaManifest, dict[str, torch.Tensor]]:
    """A delta's manifest and tensors, or one clear error for a file that is not a readable delta."""
    path = Path(path)
    if not path.is_file():
        raise BitFitError(f"no delta file at {path}: give the path of a .safetensors file saved by "
                          "'python -m bitfit_edu run ... --deltas DIR'")
    size = path.stat().st_size
    if size > LARGEST_DELTA:
        raise BitFitError(f"{path} is {size / 2**20:,.0f} MiB, and a delta of biases and a head is a few MiB at "
                          f"most (this package reads up to {LARGEST_DELTA // 2**20} MiB): it is not one")
    try:
        data = path.read_bytes()  # one read: a delta is small, and this is 4x faster than safe_open per tensor
        tensors = dict(sorted(load(data).items()))  # in name order, as safe_open lists them
        metadata = _header(data).get("__metadata__") or {}
    except (SafetensorError, OSError, ValueError) as error:
        raise BitFitError(f"corrupt delta file {path}: not a readable safetensors file ({error}). "
                          "Save the delta again from its run") from None
    if MANIFEST_KEY not in metadata:
        raise BitFitError(f"{path} is a safetensors file but not a bitfit_edu delta (no manifest): "
                          "save deltas with 'python -m bitfit_edu run ... --deltas DIR'")
    manifest = DeltaManifest.from_json(metadata[MANIFEST_KEY], str(path))
    listed, present = set(manifest.tensors), set(tensors)
    if listed != present:
        raise BitFitError(f"corrupt delta file {path}: its manifest lists {sorted(listed - present) or 'no'} "
                          f"tensors it lacks and it holds {sorted(present - listed) or 'no'} tensors it does not list")
    check_integrity(manifest, tensors, str(path))
    return manifest, tensors


def _header(data: bytes) -> dict:
    """A safetensors file's JSON header: its first 8 bytes give the header's length (little-endian), the header
    follows (the format: https://github.com/huggingface/safetensors#format)."""
    length = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + length])


def trusts_unsigned() -> bool:
    """Whether the user asked to load first-format deltas (``TRUST_UNSIGNED``)."""
    return os.environ.get(TRUST_UNSIGNED, "").lower() in ("1", "true", "yes")


def check_integrity(manifest: DeltaManifest, tensors: dict[str, torch.Tensor], source: str) -> None:
    """One clear error unless the manifest and tensors are those the manifest's digest names, the tensors are
    finite, and the delta carries reference logits, by which it is checked when loaded. A first-format delta,
    whose manifest no digest covers, is refused unless the user trusts it (``trusts_unsigned``)."""
    if not manifest.vouched and not trusts_unsigned():
        raise BitFitError(f"{source} is a delta of the first format: no digest covers its manifest (its labels, its "
                          "task), so an edit there would go unnoticed. Save it again from its run, or pass "
                          f"--trust-unsigned ({TRUST_UNSIGNED}=1) to load it checked by its reference logits alone")
    if manifest.vouched and content_digest(manifest, tensors) != manifest.content_sha256:
        raise BitFitError(f"{source} was changed after it was saved: its manifest or its tensors do not match the "
                          "SHA-256 in its manifest. Do not use it; save the delta again from its run")
    if manifest.tensors_sha256 is not None and tensors_digest(tensors) != manifest.tensors_sha256:
        raise BitFitError(f"{source} was changed after it was saved: its tensors do not match the SHA-256 in its "
                          "manifest. Do not use it; save the delta again from its run")
    if not bool(torch.isfinite(torch.cat([tensor.reshape(-1) for tensor in tensors.values()])).all()):
        name, bad = next((name, int((~torch.isfinite(tensor)).sum())) for name, tensor in tensors.items()
                         if not bool(torch.isfinite(tensor).all()))
        raise BitFitError(f"{source}: {name} holds {bad} non-finite value(s) (NaN or infinity): the run diverged "
                          "or the file is damaged. Save the delta again from a run that finished")
    if manifest.reference is None:
        raise BitFitError(f"{source} carries no reference logits, so no one can check that it gives the model it "
                          "was saved from: save the delta again from its run")


def check_reference(model: nn.Module, manifest: DeltaManifest, source: str) -> None:
    """One clear error unless ``model`` (the backbone with the delta in place) gives the manifest's reference
    logits to ``REFERENCE_TOLERANCE``."""
    gap = reference_gap(model, manifest.reference)
    if not gap <= REFERENCE_TOLERANCE:
        raise BitFitError(f"{source}: the backbone with this delta gives logits {gap:.3g} away from those the "
                          f"fine-tuned model gave (at most {REFERENCE_TOLERANCE:g} allowed): the delta was altered or "
                          "does not belong to this backbone. Save it again from its run")


def check_fits(model: nn.Module, manifest: DeltaManifest, tensors: dict[str, torch.Tensor], source: str,
               digest: str | None = None, shapes: dict[str, tuple[int, ...]] | None = None) -> None:
    """One clear error unless the delta fits ``model``: same backbone, and a parameter of the same shape
    for every tensor. ``digest`` and ``shapes`` (parameter name -> shape): the model's, if already known."""
    digest = digest or backbone_digest(model)
    if manifest.backbone_sha256 != digest:
        raise BitFitError(f"{source} was trained on another backbone: {manifest.model} with weights "
                          f"{manifest.backbone_sha256[:12]}..., and this model's weights are {digest[:12]}...: "
                          f"load it onto {manifest.model}")
    parameters = shapes or {name: tuple(p.shape) for name, p in model.named_parameters()}
    missing = [name for name in tensors if name not in parameters]
    if missing:
        raise BitFitError(f"{source} holds {missing[0]}, which this model does not have"
                          f"{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''}: was it saved "
                          f"from a model with the {manifest.readout} readout?")
    for name, tensor in tensors.items():
        if tuple(tensor.shape) != tuple(parameters[name]):
            raise BitFitError(f"{source}: {name} has shape {tuple(tensor.shape)}, the model's has "
                              f"{tuple(parameters[name])}: a head for {manifest.num_labels} labels "
                              f"({manifest.task}) needs a model built with num_labels={manifest.num_labels}")


def load_delta(model: nn.Module, path: str | Path) -> DeltaManifest:
    """Apply the delta at ``path`` to ``model`` (its backbone's pre-trained weights, a head of the task's
    size). Everything is checked; on any error the model is left as it was."""
    manifest, tensors = read_delta(path)
    check_fits(model, manifest, tensors, str(path))
    parameters = dict(model.named_parameters())
    before = {name: parameters[name].detach().clone() for name in tensors}
    with torch.no_grad():
        for name, tensor in tensors.items():
            parameters[name].copy_(tensor)
        try:
            check_reference(model, manifest, str(path))
        except BitFitError:
            for name, tensor in before.items():
                parameters[name].copy_(tensor)
            raise
    return manifest


@torch.no_grad()
def reference_for(model: nn.Module, batch: dict[str, torch.Tensor]) -> Reference:
    """``model``'s fp32 logits, in eval mode, for a tokenized ``batch``: stored in a delta's manifest."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    logits = model(**{k: v.to(device) for k, v in batch.items()}).logits.float().cpu()
    model.train(was_training)
    return Reference({k: v.tolist() for k, v in batch.items()}, logits.tolist())


@torch.no_grad()
def reference_gap(model: nn.Module, reference: Reference) -> float:
    """Largest |logit difference| between ``model`` and a delta's reference logits: 0 for the same model."""
    batch = {k: torch.tensor(v) for k, v in reference.inputs.items()}
    logits = model.eval()(**batch).logits.float()
    return float((logits - torch.tensor(reference.logits)).abs().max())


@torch.no_grad()
def derived_delta(model: nn.Module, path: str | Path, out: str | Path, seed: int, scale: float = 0.01) -> Path:
    """A new delta derived from the one at ``path`` by a small perturbation: each tensor plus Gaussian noise of
    ``scale`` times its own standard deviation, with reference logits recomputed on ``model`` (the backbone
    the delta belongs to, with a head of its size) and a fresh digest. For scale tests of serving: a derived
    delta is a plausible task, not a trained one."""
    manifest, tensors = read_delta(path)  # it carries reference inputs: every readable delta does
    generator = torch.Generator().manual_seed(seed)
    derived = {name: tensor + scale * tensor.std().nan_to_num() * torch.randn(tensor.shape, generator=generator)
               for name, tensor in tensors.items()}
    check_fits(model, manifest, derived, str(path))
    parameters = dict(model.named_parameters())
    for name, tensor in derived.items():
        parameters[name].copy_(tensor)
    batch = {k: torch.tensor(v) for k, v in manifest.reference.inputs.items()}
    manifest = _signed(replace(manifest, reference=reference_for(model, batch)), derived)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(derived, out, metadata={MANIFEST_KEY: manifest.to_json()})
    return out


def package_version() -> str:
    try:
        return version("bitfit_edu")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"
