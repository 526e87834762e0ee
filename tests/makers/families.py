"""Model families as researchers write them, for the support table and the Keras 3 tests.

Written against the Keras API that Keras 2 (the project's ``tf.keras``) and Keras 3 share, so
the same function builds a family in both: ``build(name, keras)``. Layers keep Keras's default
names on purpose (``dense``, ``dense_1``, ...): most authors never name them. Imports nothing
of the project (``tests/makers/keras3_files.py`` runs it under Keras 3).
"""

from __future__ import annotations

import re
from typing import Any

INPUT_SHAPE = (28, 28, 1)
CLASSES = 10


def seed_cnn(keras: Any, head: str = "softmax") -> Any:
    """The seed report's CNN; with ``head="linear"`` the same network ending in logits."""
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input(INPUT_SHAPE),
            layers.Conv2D(32, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(64, 3, activation="relu"),
            layers.Flatten(),
            layers.Dense(64, activation="relu"),
            layers.Dense(CLASSES, activation=head),
        ]
    )


def logits_cnn(keras: Any) -> Any:
    return seed_cnn(keras, head="linear")


def lenet(keras: Any) -> Any:
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input(INPUT_SHAPE),
            layers.Conv2D(6, 5, activation="relu"),
            layers.AveragePooling2D(2),
            layers.Conv2D(16, 5, activation="relu"),
            layers.AveragePooling2D(2),
            layers.Flatten(),
            layers.Dense(120, activation="relu"),
            layers.Dense(84, activation="relu"),
            layers.Dense(CLASSES, activation="softmax"),
        ]
    )


def vgg_bn(keras: Any) -> Any:
    """VGG-style: conv-BatchNorm-ReLU blocks, max-pooling, (spatial) dropout, a Softmax
    layer as the head."""
    layers = keras.layers
    stack = [keras.Input(INPUT_SHAPE)]
    for filters in (16, 16, None, 32, None):
        if filters is None:
            stack += [layers.MaxPooling2D(2), layers.SpatialDropout2D(0.1)]
            continue
        stack += [
            layers.Conv2D(filters, 3, padding="same", use_bias=False),
            layers.BatchNormalization(),
            layers.Activation("relu"),
        ]
    stack += [
        layers.Flatten(),
        layers.Dense(32),
        layers.BatchNormalization(),
        layers.ReLU(),
        layers.Dropout(0.3),
        layers.Dense(CLASSES),
        layers.Softmax(),
    ]
    return keras.Sequential(stack)


def resnet(keras: Any) -> Any:
    """ResNet-style: a stem, two residual blocks (identity and 1x1 projection skips, Add),
    global average pooling, a logits head."""
    layers = keras.layers
    image = keras.Input(INPUT_SHAPE)
    x = layers.Rescaling(2.0, offset=-1.0)(image)
    x = layers.Conv2D(16, 3, padding="same")(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    for filters, stride in ((16, 1), (32, 2)):
        y = layers.Conv2D(filters, 3, strides=stride, padding="same")(x)
        y = layers.BatchNormalization()(y)
        y = layers.ReLU()(y)
        y = layers.Conv2D(filters, 3, padding="same")(y)
        y = layers.BatchNormalization()(y)
        if stride != 1 or x.shape[-1] != filters:
            x = layers.Conv2D(filters, 1, strides=stride)(x)
            x = layers.BatchNormalization()(x)
        x = layers.Add()([x, y])
        x = layers.ReLU()(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(image, layers.Dense(CLASSES)(x))


def mobilenet(keras: Any) -> Any:
    """MobileNet-style: padding, a strided conv, depthwise and separable convolutions with
    BatchNorm, global max pooling, a softmax head."""
    layers = keras.layers
    image = keras.Input(INPUT_SHAPE)
    x = layers.ZeroPadding2D(1)(image)
    x = layers.Conv2D(16, 3, strides=2)(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.DepthwiseConv2D(3, padding="same")(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.Conv2D(32, 1)(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.SeparableConv2D(32, 3, padding="same")(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.GlobalMaxPooling2D()(x)
    return keras.Model(image, layers.Dense(CLASSES, activation="softmax")(x))


def branches(keras: Any) -> Any:
    """Two branches joined by Concatenate, Gaussian noise (training only), a Reshape, pooling
    of both kinds, a leaky ReLU and an Activation layer as the softmax: the layers the other
    families leave out."""
    layers = keras.layers
    image = keras.Input(INPUT_SHAPE)
    left = layers.Conv2D(8, 3, padding="same", activation="relu")(image)
    right = layers.Conv2D(8, 5, padding="same")(image)
    right = layers.LeakyReLU(0.1)(right)
    x = layers.Concatenate()([left, right])
    x = layers.GaussianNoise(0.1)(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.AveragePooling2D(2)(x)
    x = layers.Reshape((7 * 7 * 16,))(x)
    x = layers.Dense(CLASSES)(x)
    return keras.Model(image, layers.Activation("softmax")(x))


FAMILIES = {
    "seed CNN": seed_cnn,
    "logits CNN": logits_cnn,
    "LeNet": lenet,
    "VGG-style + BatchNorm": vgg_bn,
    "ResNet-style (Add, global pooling)": resnet,
    "MobileNet-style (depthwise)": mobilenet,
    "branches (Concatenate)": branches,
}


def file_stem(family: str) -> str:
    """``VGG-style + BatchNorm`` -> ``vgg_style_batchnorm``."""
    return re.sub(r"[^a-z0-9]+", "_", family.split(" (")[0].lower()).strip("_")


def build(family: str, keras: Any) -> Any:
    return FAMILIES[family](keras)
