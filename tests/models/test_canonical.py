"""The form the analyzers see (src.models.canonical): logits of any head, BatchNorm folded,
names that cannot collide, relevance conserved through branches; hand-computed where it matters."""

from __future__ import annotations

import numpy as np
import pytest
from makers.families import FAMILIES, build

from src.common.errors import UserError
from src.common.tf_runtime import innvestigate, reset, tensorflow
from src.explain.heatmaps import create_analyzer
from src.models.canonical import explainable, fold, has_depthwise, output_kind


def keras():
    return tensorflow().keras


def images(count: int = 4, shape=(28, 28, 1)) -> np.ndarray:
    return np.random.default_rng(0).random((count, *shape)).astype(np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def with_batchnorm_statistics(model) -> None:
    """BatchNorm weights far from their initial ones, so folding them changes something."""
    rng = np.random.default_rng(1)
    for layer in model.layers:
        if isinstance(layer, keras().layers.BatchNormalization):
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape) for w in layer.get_weights()])


def test_the_output_kind_is_read_from_the_last_layer():
    reset(0)
    layers = keras().layers

    def ending_in(*last):
        return keras().Sequential([layers.Input((3,)), layers.Dense(4), *last])

    assert output_kind(ending_in(layers.Dense(2, activation="softmax"))) == "softmax"
    assert output_kind(ending_in(layers.Dense(2, activation="sigmoid"))) == "sigmoid"
    assert output_kind(ending_in(layers.Dense(2))) == "logits"
    assert output_kind(ending_in(layers.Dense(2), layers.Softmax())) == "softmax"
    assert output_kind(ending_in(layers.Dense(2), layers.Activation("softmax"))) == "softmax"
    assert output_kind(ending_in(layers.Dense(2), layers.Activation("relu"))) == "logits"


@pytest.mark.parametrize("for_lrp", [False, True], ids=["form", "LRP's form"])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_explainable_form_computes_the_models_logits(family, for_lrp):
    """Its softmax is the model's output (softmax heads), or it is the output (logits), to
    1e-5; no BatchNorm or Dropout is left, every layer is named anew, and in LRP's form
    (depthwise convolutions as grouped ones) every layer is one iNNvestigate's LRP takes."""
    reset(0)
    model = build(family, keras())
    with_batchnorm_statistics(model)
    form = explainable(model, depthwise_as_conv=for_lrp)
    x = images()
    logits, output = form.predict(x, verbose=0), model.predict(x, verbose=0)
    expected = output if output_kind(model) == "logits" else softmax(logits)
    np.testing.assert_allclose(expected, output, atol=1e-5)
    kinds = {type(layer).__name__ for layer in form.layers}
    assert not kinds & {"BatchNormalization", "Dropout", "Softmax"}
    from innvestigate.backend.checks import is_convnet_layer

    unsupported = [type(layer).__name__ for layer in form.layers if not is_convnet_layer(layer)]
    assert unsupported == ([] if for_lrp or not has_depthwise(model) else ["DepthwiseConv2D"])
    assert not {layer.name for layer in form.layers} & {layer.name for layer in model.layers}


def test_fold_by_hand_dense_and_depthwise():
    # Dense: y = x W + b, then y * scale + shift.
    kernel, bias = np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([1.0, 1.0])
    scale, shift = np.array([2.0, 0.5]), np.array([1.0, -1.0])
    folded = fold("Dense", {"kernel": kernel}, bias, scale, shift)
    np.testing.assert_allclose(folded["kernel"], [[2.0, 1.0], [6.0, 2.0]])
    np.testing.assert_allclose(folded["bias"], [3.0, -0.5])
    # Depthwise (1, 1, 2 channels, multiplier 2): output channel c * 2 + m.
    depthwise = np.ones((1, 1, 2, 2))
    scale4 = np.array([1.0, 2.0, 3.0, 4.0])
    folded = fold("DepthwiseConv2D", {"depthwise_kernel": depthwise}, 0.0, scale4, np.zeros(4))
    np.testing.assert_allclose(folded["depthwise_kernel"][0, 0], [[1.0, 2.0], [3.0, 4.0]])
    # Separable: the pointwise kernel makes the output channels; the depthwise one stays.
    kernels = {"depthwise_kernel": depthwise, "pointwise_kernel": np.ones((1, 1, 4, 2))}
    folded = fold("SeparableConv2D", kernels, np.zeros(2), scale, shift)
    np.testing.assert_array_equal(folded["depthwise_kernel"], depthwise)
    np.testing.assert_allclose(folded["pointwise_kernel"][0, 0, 0], [2.0, 0.5])


def test_the_folded_form_follows_the_models_weights():
    """A folded layer computes its weights from the model's variables, so a change of a
    BatchNorm's statistics (the randomisation cascade) reaches the built form."""
    reset(0)
    model = build("VGG-style + BatchNorm", keras())
    form = explainable(model)
    with_batchnorm_statistics(model)
    x = images(2)
    np.testing.assert_allclose(
        softmax(form.predict(x, verbose=0)), model.predict(x, verbose=0), atol=1e-5
    )


def test_layers_with_keras_default_names_are_explained():
    """iNNvestigate names its copies with Keras's defaults (``dense``, ``dense_1``, ...). A
    model loaded from a file keeps the names its author's Keras gave it, which do not count
    in this graph's name counter: copies then collide with them ('The name "dense" is used 2
    times in the model'). The names are given here as a file gives them."""
    reset(0)
    layers = keras().layers
    model = keras().Sequential(
        [
            layers.Input((28, 28, 1)),
            layers.Flatten(name="flatten"),
            layers.Dense(8, activation="relu", name="dense"),
            layers.Dense(10, activation="softmax", name="dense_1"),
        ]
    )
    for method in ("gradient", "lrp.epsilon", "deep_taylor"):
        analyzer = create_analyzer(explainable(model), method, {}, "max_activation")
        assert np.isfinite(analyzer.analyze(images(2))).all()


def test_a_logits_head_is_explained_as_its_logit():
    """iNNvestigate's model_wo_softmax raises 'No output activation found.' on it."""
    reset(0)
    layers = keras().layers
    model = keras().Sequential([layers.Input((4,)), layers.Dense(3, name="out")])
    model.get_layer("out").set_weights([np.eye(4, 3), np.zeros(3)])
    with pytest.raises(Exception, match="No output activation"):
        innvestigate().model_wo_softmax(model)
    x = np.array([[1.0, 2.0, 3.0, 0.0]], np.float32)
    gradient = create_analyzer(explainable(model), "gradient", {}, "max_activation").analyze(x)
    np.testing.assert_allclose(gradient, [[0.0, 0.0, 1.0, 0.0]])  # d logit_2 / dx


def test_a_sigmoid_head_is_explained_as_its_logit():
    reset(0)
    layers = keras().layers
    model = keras().Sequential([layers.Input((4,)), layers.Dense(3, activation="sigmoid")])
    x = images(5, (4,))
    logits = explainable(model).predict(x, verbose=0)
    np.testing.assert_allclose(1 / (1 + np.exp(-logits)), model.predict(x, verbose=0), atol=1e-6)


def lrp_z(model, x: np.ndarray) -> np.ndarray:
    analyzer = create_analyzer(explainable(model), "lrp.z", {}, "max_activation")
    return analyzer.analyze(x)


def test_lrp_conserves_relevance_through_add_and_concatenate_by_hand():
    """x = (1, 2) -> h = x W, W = [[1, 0], [1, 1]] -> s = x + h (a skip, Add) -> out = s v,
    v = (1, 2); no biases, all positive, so LRP-z splits by contribution:
    out = 4 + 8 = 12; R_s = (4, 8); Add: R_x(skip) = (1/4 * 4, 2/4 * 8) = (1, 4),
    R_h = (3/4 * 4, 2/4 * 8) = (3, 4); through W: R_x0 = 1/3 * 3 = 1,
    R_x1 = 2/3 * 3 + 2/2 * 4 = 6; in all R_x = (2, 10), which sums to the output 12."""
    reset(0)
    layers = keras().layers
    x_in = layers.Input((2,))
    h = layers.Dense(2, use_bias=False, name="w")(x_in)
    s = layers.Add()([x_in, h])
    model = keras().Model(x_in, layers.Dense(1, use_bias=False, name="v")(s))
    model.get_layer("w").set_weights([np.array([[1.0, 0.0], [1.0, 1.0]])])
    model.get_layer("v").set_weights([np.array([[1.0], [2.0]])])
    relevance = lrp_z(model, np.array([[1.0, 2.0]], np.float32))
    np.testing.assert_allclose(relevance, [[2.0, 10.0]], rtol=1e-5)
    # Concatenate: branches a = x . (1, 1) = 3 and b = x . (0, 2) = 4, out = 1 a + 1 b = 7;
    # R_a = 3, R_b = 4; R_x = (1/3 * 3, 2/3 * 3 + 4) = (1, 6), summing to 7.
    reset(0)
    x_in = layers.Input((2,))
    a = layers.Dense(1, use_bias=False, name="a")(x_in)
    b = layers.Dense(1, use_bias=False, name="b")(x_in)
    joined = layers.Concatenate()([a, b])
    model = keras().Model(x_in, layers.Dense(1, use_bias=False, name="out")(joined))
    model.get_layer("a").set_weights([np.array([[1.0], [1.0]])])
    model.get_layer("b").set_weights([np.array([[0.0], [2.0]])])
    model.get_layer("out").set_weights([np.array([[1.0], [1.0]])])
    relevance = lrp_z(model, np.array([[1.0, 2.0]], np.float32))
    np.testing.assert_allclose(relevance, [[1.0, 6.0]], rtol=1e-5)


def test_lrp_conserves_relevance_through_global_average_pooling_by_hand():
    """x = (1, 2, 3, 4) on a 2x2 image -> mean 2.5 -> out = 2 * 2.5 = 5; each pixel's share
    of the mean is x_i / 10, so R = (0.5, 1, 1.5, 2)."""
    reset(0)
    layers = keras().layers
    model = keras().Sequential(
        [
            layers.Input((2, 2, 1)),
            layers.GlobalAveragePooling2D(),
            layers.Dense(1, use_bias=False, name="out"),
        ]
    )
    model.get_layer("out").set_weights([np.array([[2.0]])])
    relevance = lrp_z(model, np.arange(1.0, 5.0, dtype=np.float32).reshape(1, 2, 2, 1))
    np.testing.assert_allclose(relevance.ravel(), [0.5, 1.0, 1.5, 2.0], rtol=1e-5)


def test_a_shared_layer_is_refused_in_one_line():
    reset(0)
    layers = keras().layers
    x_in = layers.Input((2,))
    shared = layers.Dense(2)
    model = keras().Model(x_in, layers.Add()([shared(x_in), shared(shared(x_in))]))
    with pytest.raises(UserError, match="called 3 times|used more than once"):
        explainable(model)
