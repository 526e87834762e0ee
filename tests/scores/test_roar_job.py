"""A remove-and-retrain job (src.scores.configured.retrained) on a small trained model: the fresh
model is the run's own training on the degraded data (same seed, same settings: with nothing
removed, the very same model), the retrained models and the pixel order come from the model
cache on a second call, and ROAR and KAR train on different data."""

from __future__ import annotations

import logging

import pytest
from support import SMALL

from src.data import load_dataset
from src.models.cache import ModelCache
from src.models.configured import build_network, train_model
from src.models.training import weights_image
from src.scores.configured import retrained


@pytest.fixture
def trained(compose_config):
    """A digits CNN of one epoch, its training stored in the model cache as a run stores it."""

    def make(*overrides: str):
        cfg = compose_config(*SMALL, "train.epochs=1", "analyzer=gradient", *overrides)
        data = load_dataset("digits", train_size=300)
        model, _ = build_network(cfg, data.input_shape, data.num_classes)
        training = train_model(cfg, data, model)
        key = "base-key"
        ModelCache(cfg.train.cache_dir).store(key, 1, weights_image(model), training, "run-base")
        return cfg, data, model, key, training

    return make


def test_with_nothing_removed_the_fresh_model_is_the_runs_own_training(trained):
    # int(784 * 0.1 / 100) = 0 pixels: the degraded data are the data.
    cfg, data, model, key, training = trained("roar.fraction=0.1")
    accuracies = retrained(cfg, data, model, key, "run-roar")
    assert accuracies["roar_accuracy"] == training.test_accuracy
    assert accuracies["kar_accuracy"] == training.test_accuracy
    assert accuracies["roar_train_time_s"] > 0


def test_a_second_job_reuses_the_order_and_the_retrained_models(trained, caplog):
    cfg, data, model, key, _ = trained("roar.fraction=50")
    first = retrained(cfg, data, model, key, "run-first")
    # The run's model is gone with its graph: rebuild it from the cache, as a reusing job does.
    cached = ModelCache(cfg.train.cache_dir).load(key, 1)
    again, _ = build_network(cfg, data.input_shape, data.num_classes)
    again.load_weights(str(cached.weights))
    with caplog.at_level(logging.INFO):
        second = retrained(cfg, data, again, key, "run-second")
    assert "roar order: from the model cache" in caplog.text
    assert (
        caplog.text.count("the retrained model from the model cache (trained by run run-first)")
        == 2
    )
    assert second["roar_train_time_s"] == second["kar_train_time_s"] == 0
    for mode in ("roar", "kar"):
        assert second[f"{mode}_accuracy"] == first[f"{mode}_accuracy"]
    # Two entries besides the base one: ROAR's and KAR's degraded data differ.
    entries = [p for p in ModelCache(cfg.train.cache_dir).folder.glob("*-retrained") if p.is_dir()]
    assert len(entries) == 2


def test_a_training_whose_loss_stays_at_a_guess_did_not_learn():
    from src.models.training import TrainingResult
    from src.scores.configured import learned

    def training(losses):
        return TrainingResult({"train_loss": losses}, 1.0, None, None)

    # ln 10 = 2.3026; 95% of it 2.187.
    assert not learned(training([2.3035, 2.3026]), 10)
    assert learned(training([2.3, 2.1]), 10)
    assert not learned(training([0.9, 0.69]), 2)  # ln 2 = 0.693: a two-class guess
    assert learned(training([]), 10)  # nothing recorded: nothing to say
