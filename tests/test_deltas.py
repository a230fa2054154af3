"""Delta files: a task's trained biases and head saved apart, loaded back onto a frozen backbone, and every
bad delta refused with one clear error and the backbone left untouched."""

import json
import os

import pytest
import torch
from conftest import write_synthetic_glue
from safetensors import safe_open
from safetensors.torch import save_file

from bitfit_edu.core.methods import prepare
from bitfit_edu.core.readout import load_classifier
from bitfit_edu.deploy.deltas import (
    MANIFEST_KEY,
    TRUST_UNSIGNED,
    backbone_digest,
    load_delta,
    read_delta,
    reference_gap,
    save_delta,
    tensors_digest,
)
from bitfit_edu.errors import BitFitError
from bitfit_edu.experiments.runs import RunConfig
from bitfit_edu.experiments.training import run


@pytest.fixture(scope="module")
def trained(tiny_model_dir, tmp_path_factory):
    """Real (tiny) BitFit runs that saved their deltas: task -> delta path."""
    folder = tmp_path_factory.mktemp("deltas")
    glue_dir = write_synthetic_glue(folder / "glue")
    paths = {}
    for task, readout in (("rte", "mean"), ("stsb", "mean"), ("sst2", "cls_pooler")):
        config = RunConfig(model=tiny_model_dir, task=task, method="bitfit", epochs=2, batch_size=8,
                           train_eval_size=8, learning_rate=1e-2, readout=readout)
        paths[task] = folder / f"{task}.safetensors"
        run(config, glue_dir=glue_dir, progress=False, delta=paths[task])
    return paths


def backbone(model_dir, manifest_or_labels, readout="mean", seed=1):
    num_labels = getattr(manifest_or_labels, "num_labels", manifest_or_labels)
    return load_classifier(model_dir, num_labels, readout, seed=seed).eval()


def state(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_a_delta_holds_the_trained_biases_and_head_and_says_what_it_is(trained, tiny_model_dir):
    manifest, tensors = read_delta(trained["rte"])
    model = backbone(tiny_model_dir, 2)
    assert manifest.model == tiny_model_dir and manifest.task == "rte" and manifest.label == "bitfit"
    assert manifest.label_names == ("entailment", "not_entailment") and manifest.num_labels == 2
    assert manifest.backbone_sha256 == backbone_digest(model)
    assert set(tensors) == {n for n in manifest.tensors} and "classifier.weight" in tensors
    assert all(n.endswith(".bias") or n.startswith("classifier.") for n in tensors)
    assert {n: list(t.shape) for n, t in tensors.items()} == manifest.tensors
    assert trained["rte"].stat().st_size < 64 * 1024


@pytest.mark.parametrize("task,readout", [("rte", "mean"), ("stsb", "mean"), ("sst2", "cls_pooler")])
def test_backbone_plus_delta_gives_the_fine_tuned_models_logits(trained, tiny_model_dir, task, readout):
    manifest, _ = read_delta(trained[task])
    model = backbone(tiny_model_dir, manifest, readout)
    assert reference_gap(model, manifest.reference) > 1e-3  # the untrained backbone answers otherwise
    load_delta(model, trained[task])
    assert reference_gap(model, manifest.reference) <= 1e-6


def test_a_delta_of_another_backbone_is_refused(trained, tiny_model_dir, tmp_path):
    other = backbone(tiny_model_dir, 2)
    with torch.no_grad():
        other.base_model.encoder.layer[0].attention.self.query.weight.add_(0.01)  # another pre-training
    before = state(other)
    with pytest.raises(BitFitError, match="was trained on another backbone: .* load it onto"):
        load_delta(other, trained["rte"])
    assert all(torch.equal(before[n], p) for n, p in other.named_parameters())


def test_a_head_of_the_wrong_size_is_refused_and_nothing_changes(trained, tiny_model_dir):
    model = backbone(tiny_model_dir, 1)  # a regression head; the RTE delta has two labels
    before = state(model)
    with pytest.raises(BitFitError, match=r"classifier.bias has shape \(2,\), the model.s has \(1,\): .*num_labels=2"):
        load_delta(model, trained["rte"])
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())


def edited(path, tmp_path, drop=None, add=None, manifest_edit=None, tensor_edit=None):
    """A copy of the delta at ``path`` with a tensor dropped, added or edited in place, or its manifest edited."""
    with safe_open(path, framework="pt") as file:
        metadata = file.metadata()
        tensors = {n: file.get_tensor(n) for n in file.keys() if n != drop}
    if tensor_edit:
        tensor_edit(tensors)
    if add:
        tensors[add] = torch.zeros(3)
    manifest = json.loads(metadata[MANIFEST_KEY])
    if manifest_edit:
        manifest_edit(manifest)
    copy = tmp_path / "edited.safetensors"
    save_file(tensors, copy, metadata={MANIFEST_KEY: json.dumps(manifest)})
    return copy


def test_missing_and_extra_tensors_are_named(trained, tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setenv(TRUST_UNSIGNED, "1")  # one edit below makes a first-format delta
    model = backbone(tiny_model_dir, 2)
    before = state(model)
    with pytest.raises(BitFitError, match=r"lists \['classifier.bias'\] tensors it lacks"):
        load_delta(model, edited(trained["rte"], tmp_path, drop="classifier.bias"))
    with pytest.raises(BitFitError, match=r"holds \['bert.extra.bias'\] tensors it does not list"):
        load_delta(model, edited(trained["rte"], tmp_path, add="bert.extra.bias"))

    def list_extra(manifest):  # listed, as a renamed or added tensor would be in a delta without a digest
        manifest["tensors"]["bert.extra.bias"] = [3]
        first_format(manifest)
    with pytest.raises(BitFitError, match="holds bert.extra.bias, which this model does not have"):
        load_delta(model, edited(trained["rte"], tmp_path, add="bert.extra.bias", manifest_edit=list_extra))
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())


@pytest.mark.parametrize("damage,message", [
    (lambda p: p.write_bytes(p.read_bytes()[:100]), "corrupt delta file .*not a readable safetensors file"),
    (lambda p: p.write_text("hello"), "corrupt delta file"),
    (lambda p: save_file({"x": torch.zeros(1)}, p), "not a bitfit_edu delta"),
    (lambda p: p.unlink(), "no delta file at"),
    (lambda p: os.truncate(p, 2**31), "2,048 MiB, and a delta of biases and a head is a few MiB"),  # sparse: never read
])
def test_a_corrupt_or_foreign_file_is_one_clear_error(trained, tmp_path, tiny_model_dir, damage, message):
    copy = tmp_path / "copy.safetensors"
    copy.write_bytes(trained["rte"].read_bytes())
    damage(copy)
    with pytest.raises(BitFitError, match=message):
        load_delta(backbone(tiny_model_dir, 2), copy)


def test_an_unknown_delta_format_asks_for_an_update(trained, tmp_path, tiny_model_dir):
    def future(manifest):
        manifest["format"] = "bitfit_edu.delta/9"
    with pytest.raises(BitFitError, match="format 'bitfit_edu.delta/9'.*update the package"):
        load_delta(backbone(tiny_model_dir, 2), edited(trained["rte"], tmp_path, manifest_edit=future))


def query_bias(tensors):
    return next(name for name in tensors if name.endswith("layer.0.attention.self.query.bias"))


def test_a_delta_altered_after_saving_is_refused_by_its_digest(trained, tmp_path, tiny_model_dir):
    model = backbone(tiny_model_dir, 2)
    before = state(model)

    def nudge(tensors):
        tensors["classifier.bias"] += 0.5  # flips answers, and nothing in the file's shape says so
    with pytest.raises(BitFitError, match="was changed after it was saved.*SHA-256"):
        load_delta(model, edited(trained["rte"], tmp_path, tensor_edit=nudge))
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())


def test_a_nan_is_refused_even_when_the_digest_matches(trained, tmp_path, tiny_model_dir, monkeypatch):
    """A run that diverged and saved anyway: the digest was taken over the NaN."""
    monkeypatch.setenv(TRUST_UNSIGNED, "1")
    def poison(tensors):
        tensors[query_bias(tensors)][0] = float("nan")
        poison.digest = tensors_digest(tensors)

    def redigest(manifest):
        first_format(manifest, tensors_sha256=poison.digest)
    copy = edited(trained["rte"], tmp_path, tensor_edit=poison, manifest_edit=redigest)
    with pytest.raises(BitFitError, match=r"query.bias holds 1 non-finite value\(s\) \(NaN or infinity\)"):
        load_delta(backbone(tiny_model_dir, 2), copy)


def test_a_first_format_delta_is_refused_unless_trusted_then_checked_by_its_reference_logits(
        trained, tmp_path, tiny_model_dir, monkeypatch):
    def old(manifest):
        first_format(manifest)

    with pytest.raises(BitFitError, match="first format: no digest covers its manifest.*--trust-unsigned"):
        read_delta(edited(trained["rte"], tmp_path, manifest_edit=old))
    monkeypatch.setenv(TRUST_UNSIGNED, "1")

    def nudge(tensors):
        tensors["classifier.bias"] += 0.5
    load_delta(backbone(tiny_model_dir, 2), edited(trained["rte"], tmp_path, manifest_edit=old))  # intact: loads
    model = backbone(tiny_model_dir, 2)
    before = state(model)
    with pytest.raises(BitFitError, match=r"logits .* away from those the fine-tuned model gave \(at most 0.0001"):
        load_delta(model, edited(trained["rte"], tmp_path, manifest_edit=old, tensor_edit=nudge))
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters()), "restored after the failed check"

    def neither(manifest):
        first_format(manifest, reference=None)
    with pytest.raises(BitFitError, match="carries no reference logits"):
        load_delta(model, edited(trained["rte"], tmp_path, manifest_edit=neither))


@pytest.mark.parametrize("edit", [
    lambda m: m.update(label_names=list(reversed(m["label_names"]))),  # answers come out under the other label
    lambda m: m.update(task="mnli"),
    lambda m: m.update(model="bert-base-cased"),
    lambda m: m.update(readout="cls_pooler"),
    lambda m: m.update(reference=None),
])
def test_an_edited_manifest_is_refused_by_the_digest_that_covers_it(trained, tmp_path, tiny_model_dir, edit):
    with pytest.raises(BitFitError, match="was changed after it was saved: its manifest or its tensors"):
        read_delta(edited(trained["rte"], tmp_path, manifest_edit=edit))


def first_format(manifest: dict, **fields) -> None:
    """Make a saved manifest one of the first format: no digest over the manifest, and (default) none at all."""
    manifest.update({"format": "bitfit_edu.delta/1", "tensors_sha256": None, "content_sha256": None, **fields})


def test_full_fine_tuning_has_no_bias_delta(tiny_model_dir, tmp_path):
    model = load_classifier(tiny_model_dir, 2, "mean")
    prepare(model, "full")
    with pytest.raises(BitFitError, match="only BitFit and Frozen runs have a bias delta"):
        save_delta(model, tmp_path / "full.safetensors", None)


def test_a_bf16_run_saves_fp32_reference_logits(tiny_model_dir, tmp_path, monkeypatch):
    """bf16 training wraps the model's forward in autocast; the reference must be the fp32 model's."""
    glue_dir = write_synthetic_glue(tmp_path / "glue")
    config = RunConfig(model=tiny_model_dir, task="rte", method="bitfit", epochs=1, batch_size=8,
                       train_eval_size=8, learning_rate=1e-2, readout="mean", bf16=True)
    run(config, glue_dir=glue_dir, progress=False, delta=tmp_path / "rte.safetensors")
    manifest, _ = read_delta(tmp_path / "rte.safetensors")
    model = backbone(tiny_model_dir, manifest)
    load_delta(model, tmp_path / "rte.safetensors")
    assert reference_gap(model, manifest.reference) <= 1e-6
