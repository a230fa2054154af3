"""The real classroom model (all-MiniLM-L6-v2 from ../shared/hf-hub) on real GLUE data from ../shared."""

import torch

from bitfit_edu.core.biases import bias_census, encoder_of
from bitfit_edu.core.methods import prepare
from bitfit_edu.core.readout import load_classifier
from bitfit_edu.experiments.profiles import get_profile
from bitfit_edu.experiments.runs import RunConfig
from bitfit_edu.experiments.training import run


def test_classroom_checkpoint_ships_an_untrained_pooler(classroom_model):
    model = load_classifier(classroom_model, num_labels=2, readout="cls_pooler")
    pooler_bias = encoder_of(model).pooler.dense.bias
    assert torch.count_nonzero(pooler_bias) == 0  # never trained: why the classroom profile reads by mean pooling


def test_mean_readout_drops_the_pooler_and_counts_the_biases(classroom_model):
    model = load_classifier(classroom_model, num_labels=2, readout="mean")
    census = bias_census(model)
    assert {t.group for t in census if t.layer is None} == {"b_LN_emb"}
    assert sum(t.numel for t in census) == 6 * (7 * 384 + 1536) + 384 == 25_728
    prepared = prepare(model, "bitfit")
    assert prepared.trainable_count() == 25_728 + 384 * 2 + 2


def test_smoke_run_on_real_data(classroom_model, shared_glue_dir):
    config = RunConfig.from_profile(get_profile("smoke"), "mrpc", "bitfit", model=classroom_model)
    record = run(config, glue_dir=shared_glue_dir, progress=False)
    assert record.train_size == 48 and record.evaluated["dev"] == 32
    accuracy, f1 = record.best.metrics["accuracy"], record.best.metrics["f1"]
    assert 0 <= accuracy <= 1 and 0 <= f1 <= 1 and record.best.score == (accuracy + f1) / 2
