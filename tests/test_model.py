from __future__ import annotations

from omegaconf import OmegaConf

from src.experiment import build_model


def layer_summary(model) -> list[tuple[str, tuple]]:
    return [(type(layer).__name__, tuple(layer.output_shape[1:])) for layer in model.layers]


def test_default_model_is_the_seed_reports_cnn(compose_config):
    model = build_model(compose_config())
    assert layer_summary(model) == [
        ("Conv2D", (26, 26, 32)),
        ("MaxPooling2D", (13, 13, 32)),
        ("Conv2D", (11, 11, 64)),
        ("MaxPooling2D", (5, 5, 64)),
        ("Conv2D", (3, 3, 64)),
        ("Flatten", (576,)),
        ("Dense", (64,)),
        ("Dense", (10,)),
    ]
    assert model.count_params() == 93_322
    assert [
        layer.activation.__name__ for layer in model.layers if hasattr(layer, "activation")
    ] == ["relu", "relu", "relu", "relu", "softmax"]
    assert type(model.optimizer).__name__ == "Adam"
    assert OmegaConf.select(compose_config(), "train.learning_rate") == 0.001


def test_architecture_is_a_config_change(compose_config):
    model = build_model(
        compose_config(
            "model.conv_layers=[{filters: 8, kernel_size: 5, pool: 2}]",
            "model.dense_units=[32,16]",
            "model.activation=tanh",
        )
    )
    assert layer_summary(model) == [
        ("Conv2D", (24, 24, 8)),
        ("MaxPooling2D", (12, 12, 8)),
        ("Flatten", (1152,)),
        ("Dense", (32,)),
        ("Dense", (16,)),
        ("Dense", (10,)),
    ]
    assert model.layers[0].activation.__name__ == "tanh"


def test_an_impossible_architecture_is_a_user_error(compose_config):
    import pytest

    from src.config import UserError

    with pytest.raises(UserError, match="the model config does not give a valid network"):
        build_model(compose_config("model.conv_layers=[{filters: 8, kernel_size: 40, pool: null}]"))
