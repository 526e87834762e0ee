from __future__ import annotations

from omegaconf import OmegaConf

from src.models.configured import build_model


def layer_summary(model) -> list[tuple[str, tuple]]:
    return [(type(layer).__name__, tuple(layer.output_shape[1:])) for layer in model.layers]


def test_default_model_is_the_seed_reports_cnn(compose_config):
    model = build_model(compose_config(), (28, 28, 1), 10)
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
        ),
        (28, 28, 1),
        10,
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

    from src.common.errors import UserError

    with pytest.raises(UserError, match="the model config does not give a valid network"):
        build_model(
            compose_config("model.conv_layers=[{filters: 8, kernel_size: 40, pool: null}]"),
            (28, 28, 1),
            10,
        )


def test_lenet_and_mlp_by_name_with_parameter_counts_by_hand(compose_config):
    # LeNet-5 on 28x28x1: conv1 6*(5*5*1+1) = 156; 24x24 -> pool 12x12; conv2 16*(5*5*6+1) =
    # 2,416; 8x8 -> pool 4x4 -> 256; dense 256*120+120 = 30,840; 120*84+84 = 10,164;
    # 84*10+10 = 850: 44,426.
    lenet = build_model(compose_config("model=lenet"), (28, 28, 1), 10)
    assert lenet.count_params() == 156 + 2_416 + 30_840 + 10_164 + 850 == 44_426
    # MLP 784 -> 128 -> 64 -> 10: 100,480 + 8,256 + 650.
    mlp = build_model(compose_config("model=mlp"), (28, 28, 1), 10)
    assert mlp.count_params() == 109_386
    # The input shape and class count come from the data: 32x32x3, 5 classes.
    colour = build_model(compose_config("model=lenet"), (32, 32, 3), 5)
    assert colour.input_shape == (None, 32, 32, 3) and colour.output_shape == (None, 5)


def test_every_key_reaches_the_builder_or_is_refused_in_one_line(compose_config):
    import pytest

    from src.common.errors import UserError
    from src.config.checks import validate

    # A key the builder takes reaches it: stride 2 halves the map.
    strided = build_model(
        compose_config("model.conv_layers=[{filters: 16, kernel_size: 5, pool: 2, stride: 2}]"),
        (28, 28, 1),
        10,
    )
    assert strided.layers[0].strides == (2, 2)
    assert strided.layers[0].output_shape[1:] == (12, 12, 16)
    # One it does not take is refused, at validation (before any run) and at build.
    with pytest.raises(UserError, match=r"^unknown key model.width: src.model.build_cnn takes "):
        validate(compose_config("+model.width=3"))
    with pytest.raises(UserError, match="conv_layers\\[0\\] has no key dilation"):
        build_model(
            compose_config("model.conv_layers=[{filters: 8, kernel_size: 3, dilation: 2}]"),
            (28, 28, 1),
            10,
        )
    with pytest.raises(UserError, match="model.num_classes comes from the data"):
        validate(compose_config("+model.num_classes=3"))
    with pytest.raises(UserError, match="model._target_ 'nowhere.build' cannot be imported"):
        validate(compose_config("model._target_=nowhere.build"))


def test_a_users_own_builder_outside_src_works_by_target(compose_config, user_package):
    user_package(
        "mylab.nets",
        "import tensorflow as tf\n\n"
        "def tiny(input_shape, num_classes, width=4):\n"
        "    return tf.keras.Sequential([\n"
        "        tf.keras.layers.Input(input_shape),\n"
        "        tf.keras.layers.Flatten(),\n"
        "        tf.keras.layers.Dense(width, activation='relu'),\n"
        "        tf.keras.layers.Dense(num_classes, activation='softmax'),\n"
        "    ])\n",
    )
    cfg = compose_config(
        "model=lenet", "model._target_=mylab.nets.tiny", "~model.activation", "+model.width=7"
    )
    from src.config.checks import validate

    validate(cfg)
    model = build_model(cfg, (28, 28, 1), 10)
    assert model.layers[-2].units == 7 and model.count_params() == 784 * 7 + 7 + 7 * 10 + 10


def test_an_analyzer_that_cannot_explain_the_model_says_which_can(compose_config):
    import pytest

    from src.common.errors import UserError
    from src.explain.configured import check_analyzer

    cfg = compose_config("model=lenet", "model.activation=tanh", "analyzer=deep_taylor")
    model = build_model(cfg, (28, 28, 1), 10)
    with pytest.raises(UserError) as raised:
        check_analyzer(cfg, model)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(
        "analyzer=deep_taylor: deep_taylor cannot explain this model: This DeepTaylor "
        "implementation only supports ReLU activations. (layers: Conv2D, Dense); the analyzers "
        "that can explain it: "
    )
    able = message.split("the analyzers that can explain it: ")[1].split(", ")
    assert {"gradient", "lrp_epsilon", "input_t_gradient", "noise"} <= set(able)
    assert not {"deep_taylor", "guided_backprop", "deconvnet"} & set(able)


def test_the_resnet_builder_is_the_resnet_family_of_the_support_table():
    """model=resnet is the network the support table and the Keras 3 tests call ResNet-style:
    the same layers in the same order, the same parameter count, a logits head."""
    from makers.families import resnet

    from src.common.tf_runtime import reset, tensorflow
    from src.models.canonical import output_kind
    from src.models.zoo import build_resnet

    reset(0)
    ours = build_resnet((28, 28, 1), 10)
    family = resnet(tensorflow().keras)
    assert [type(layer).__name__ for layer in ours.layers] == [
        type(layer).__name__ for layer in family.layers
    ]
    assert ours.count_params() == family.count_params()
    assert output_kind(ours) == "logits"
