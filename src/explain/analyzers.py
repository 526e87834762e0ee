"""Analyzers the project provides beside iNNvestigate's, reachable by the same names.

``create_analyzer(method, model, **params)`` looks here first, then in iNNvestigate, so an
analyzer config names any of them the same way and the pipeline has no per-analyzer code:

- ``smoothgrad``: iNNvestigate 2.1.2's ``SmoothGrad`` ignores ``noise_scale``: its
  ``GaussianSmoother._augment`` builds ``AddGaussianNoise()`` without a stddev, so the noise is
  always N(0, 1), 100% of a [0, 1] pixel range. :class:`SmoothGrad` is the same analyzer with
  the noise the config asks for (Smilkov et al. 2017: sigma = ``noise_scale`` x the image's
  max - min) from a stateless random op keyed by the seed: the same image in the same place
  of a batch gets the same noise at every call, so a map is a function of the weights and the
  image, and the randomisation cascade and robustness compare maps under the same noise
  (common random numbers) rather than under fresh noise.
- ``vargrad``: VarGrad (Adebayo et al. 2018; Hooker et al. 2019): the variance of the gradient
  over the same noisy copies, where SmoothGrad takes the mean; the project's SmoothGrad with a
  variance in place of iNNvestigate's mean reduction, since iNNvestigate has no VarGrad.
  SmoothGrad-Squared needs no code: it is ``smoothgrad`` with ``postprocess: square``
  (iNNvestigate's gradient squared before the mean; ``conf/analyzer/smoothgrad_squared.yaml``).
- ``baseline.noise``, ``baseline.input``, ``baseline.edge``: maps that explain nothing about
  the model, which every score is read against: a freshly drawn Gaussian noise map, the image
  itself, and the Sobel edge magnitude of the image. They never look at the model.
- ``baseline.laplace``: the Laplace filter of the image, XAI-TRIS's second edge detector.
- ``baseline.blurred_noise``: Gaussian noise blurred over rows and columns: a random ranking
  with the grain of a smooth map. Removing its top pixels removes random contiguous blobs, so
  remove-and-retrain (:mod:`src.scores.roar`) can tell what an analyzer gains by its content
  from what any smooth map gains by its blobs (Song et al. on the pitfalls of ROAR).

Baselines are written here because no library ships them as analyzers (iNNvestigate's
``random`` is the input plus noise, not noise).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from src.common.tf_runtime import innvestigate, tensorflow


def each_plane(images: np.ndarray, function: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``function`` of each image's each channel, one 2-D slice at a time: on the whole
    ``(N, H, W, C)`` array scipy's filters would also work across images and channels."""
    out = np.empty_like(images)
    for image, channel in np.ndindex(images.shape[0], images.shape[3]):
        out[image, :, :, channel] = function(images[image, :, :, channel])
    return out


class Baseline:
    """An analyzer-shaped map maker that ignores the model (and the explained class)."""

    def __init__(self, model: Any = None, neuron_selection_mode: str = "max_activation") -> None:
        del model, neuron_selection_mode  # the point of a baseline: it depends on neither

    def create_analyzer_model(self) -> None:
        """Nothing to build; here so :class:`src.explain.heatmaps.Explainer` treats it as any
        analyzer."""

    def analyze(self, images: np.ndarray, neuron_selection: Any = None) -> np.ndarray:
        del neuron_selection
        return self.maps(np.asarray(images, dtype=np.float32)).astype(np.float32)

    def maps(self, images: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class NoiseBaseline(Baseline):
    """Standard normal noise, drawn afresh at every call from a generator seeded by ``seed``:
    the same run config gives the same maps, and a map never repeats within a run."""

    def __init__(self, model: Any = None, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self.generator = np.random.default_rng(seed)

    def maps(self, images: np.ndarray) -> np.ndarray:
        return self.generator.standard_normal(images.shape)


class BlurredNoiseBaseline(NoiseBaseline):
    """:class:`NoiseBaseline`'s noise Gaussian-blurred (``sigma`` pixels, scipy) over rows and
    columns of each image, not across images or channels."""

    def __init__(self, model: Any = None, seed: int = 0, sigma: float = 2.0, **kwargs: Any):
        super().__init__(model, seed, **kwargs)
        self.sigma = float(sigma)

    def maps(self, images: np.ndarray) -> np.ndarray:
        from scipy import ndimage

        sigma = (0, self.sigma, self.sigma) + (0,) * (images.ndim - 3)
        return ndimage.gaussian_filter(super().maps(images), sigma=sigma, mode="nearest")


class LaplaceBaseline(Baseline):
    """The Laplace filter of each image's channels (scipy), one 2-D slice at a time
    (:func:`each_plane`): the second edge detector XAI-TRIS reads every explanation against."""

    def maps(self, images: np.ndarray) -> np.ndarray:
        from scipy import ndimage

        return each_plane(images, lambda plane: ndimage.laplace(plane, mode="nearest"))


class InputBaseline(Baseline):
    """The image itself as its own 'explanation'."""

    def maps(self, images: np.ndarray) -> np.ndarray:
        return images.copy()


class EdgeBaseline(Baseline):
    """Sobel edge magnitude of each image's channels: ``hypot(sobel_rows, sobel_columns)``
    (scipy), on one 2-D slice at a time (:func:`each_plane`)."""

    def maps(self, images: np.ndarray) -> np.ndarray:
        from scipy import ndimage

        def magnitude(plane: np.ndarray) -> np.ndarray:
            rows = ndimage.sobel(plane, axis=0, mode="nearest")
            return np.hypot(rows, ndimage.sobel(plane, axis=1, mode="nearest"))

        return each_plane(images, magnitude)


@functools.cache
def _smoothgrad_class() -> tuple[type, type]:
    """Made on first use: its base classes come with iNNvestigate, which imports TensorFlow."""
    tf = tensorflow()
    from innvestigate import layers as ilayers
    from innvestigate.analyzer.gradient_based import SmoothGrad as InnvestigateSmoothGrad

    class ScaledGaussianNoise(tf.keras.layers.Layer):
        """``x + N(0, 1) * scale * (max(x) - min(x))``, max and min per image (over every axis
        but the first); the noise from a stateless op keyed by ``seed``: the same at every
        call for the same shape. With ``period``, the noise of the first ``period`` images
        repeats along the batch: image i gets that of image i mod ``period``, so a call of k
        batches of ``period`` images gives each image the noise a call of one batch gave it
        (the op's draws for fewer images are the first of its draws for more)."""

        def __init__(self, scale: float, seed: int, period: int | None = None, **kwargs: Any):
            super().__init__(**kwargs)
            self.scale, self.seed, self.period = float(scale), int(seed), period

        def call(self, inputs, *_args, **_kwargs):
            axes = list(range(1, inputs.shape.rank))
            spread = tf.reduce_max(inputs, axis=axes, keepdims=True) - tf.reduce_min(
                inputs, axis=axes, keepdims=True
            )
            shape = tf.shape(inputs)
            if self.period is None:
                noise = tf.random.stateless_normal(shape, seed=[self.seed, 0], dtype=inputs.dtype)
            else:
                block = tf.random.stateless_normal(
                    tf.concat([[self.period], shape[1:]], 0),
                    seed=[self.seed, 0],
                    dtype=inputs.dtype,
                )
                repeats = (shape[0] + self.period - 1) // self.period
                tiled = tf.tile(block, tf.concat([[repeats], tf.ones_like(shape[1:])], 0))
                noise = tiled[: shape[0]]
            return inputs + noise * (self.scale * spread)

    class SmoothGrad(InnvestigateSmoothGrad):
        """iNNvestigate's SmoothGrad with the configured noise (see the module docstring)."""

        def __init__(
            self,
            model,
            noise_scale: float = 0.1,
            seed: int = 0,
            noise_period: int | None = None,
            **kwargs: Any,
        ):
            super().__init__(model, noise_scale=noise_scale, **kwargs)
            self._seed = int(seed) % 2**31
            self._noise_period = noise_period  # images; None: drawn for the whole call

        def _augment(self, Xs):
            repeat = ilayers.Repeat(self._augment_by_n)  # (batch, n, ...)
            add_noise = ScaledGaussianNoise(self._noise_scale, self._seed, self._noise_period)
            reshape = ilayers.AugmentationToBatchAxis(self._augment_by_n)
            return [reshape(add_noise(repeat(X))) for X in (Xs if isinstance(Xs, list) else [Xs])]

    class ReduceVariance(tf.keras.layers.Layer):
        """The variance over the augmentation axis (1), where iNNvestigate reduces by the mean."""

        def call(self, inputs, *_args, **_kwargs):
            return tf.math.reduce_variance(inputs, axis=1, keepdims=False)

    class VarGrad(SmoothGrad):
        """The variance of the gradient over SmoothGrad's noisy copies (see the module
        docstring)."""

        def _reduce(self, Xs):
            reshape = ilayers.AugmentationFromBatchAxis(self._augment_by_n)  # (batch, n, ...)
            return [ReduceVariance()(reshape(X)) for X in (Xs if isinstance(Xs, list) else [Xs])]

    return SmoothGrad, VarGrad


def _smoothgrad(model: Any, **params: Any) -> Any:
    return _smoothgrad_class()[0](model, **params)


def _vargrad(model: Any, **params: Any) -> Any:
    return _smoothgrad_class()[1](model, **params)


# method name -> constructor(model, **params), looked up before iNNvestigate's own names.
PROJECT_ANALYZERS: dict[str, Callable[..., Any]] = {
    "smoothgrad": _smoothgrad,
    "vargrad": _vargrad,
    "baseline.noise": NoiseBaseline,
    "baseline.blurred_noise": BlurredNoiseBaseline,
    "baseline.laplace": LaplaceBaseline,
    "baseline.input": InputBaseline,
    "baseline.edge": EdgeBaseline,
}


# The project's analyzers whose noise can repeat every ``noise_period`` images (SmoothGrad's).
PERIODIC_NOISE = frozenset({"smoothgrad", "vargrad"})
# The analyzers whose maps depend on an image's place in a call, not on the image alone: the
# project's SmoothGrad and VarGrad (their noise repeats every batch) and iNNvestigate's ``random``
# (stateful noise, drawn per call). Work that explains many copies explains them as a run would.
POSITIONAL_NOISE = PERIODIC_NOISE | {"random"}


def known_methods() -> list[str]:
    return sorted(set(PROJECT_ANALYZERS) | set(innvestigate().analyzer.analyzers))


def is_baseline(method: str) -> bool:
    return method.startswith("baseline.")


def takes_only_convnet_layers(method: str) -> bool:
    """iNNvestigate's LRP analyzers refuse any layer outside its list of convnet layers
    (``DepthwiseConv2D`` among them: see :func:`src.models.canonical.explainable`)."""
    return method.startswith("lrp")


def create(method: str, model: Any, **params: Any) -> Any:
    """The project's analyzer of that name, else ``innvestigate.create_analyzer``."""
    if method in PROJECT_ANALYZERS:
        return PROJECT_ANALYZERS[method](model, **params)
    return innvestigate().create_analyzer(method, model, **params)
