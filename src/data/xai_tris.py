"""XAI-TRIS (Clark, Wilming and Haufe, Machine Learning 2024): images whose ground truth is known,
where a class is carried by a tetromino drawn into noise, and where the noise can be correlated,
so that pixels outside the tetromino, which carry no class information by themselves, help a
model cancel the noise on it (suppressors).

Written after the benchmark's own generator (braindatalab/xai-tris, ``data/data_utils.py``):

- the signal: a T tetromino (class 0) and an L tetromino (class 1), ``[[1,0],[1,1],[1,0]]`` and
  ``[[1,0],[1,0],[1,1]]``, at rows/columns (1, 1) and (4, 5) of an 8x8 image ((8, 8) and (32, 40)
  of a 64x64 one, each tetromino pixel an 8x8 block Gaussian-blurred by 1.5 pixels);
- the scenarios: ``linear`` (the class's tetromino added to the noise), ``multiplicative`` (the
  noise multiplied by 1 - alpha x the tetromino), ``rigid`` (the class's tetromino turned by a
  random multiple of 90 degrees and put anywhere it fits, added), ``xor`` (both tetrominoes
  always there, each with a sign: equal signs are class 0, opposite signs class 1);
- the backgrounds: ``white``, N(0, 0.5²) per pixel, and ``correlated``, that noise Gaussian-
  blurred (3 pixels on 8x8, 10 on 64x64);
- the mix: signal and noise each divided by the Frobenius norm of the whole data set's matrix,
  ``alpha x signal + (1 - alpha) x noise`` (multiplicative: the product of the two), then the
  whole set divided by its largest absolute value; alpha per scenario and background is the
  published setting (:data:`ALPHAS`);
- the ground truth: the pixels of both tetrominoes' places for ``linear``, ``multiplicative`` and
  ``xor`` (the benchmark's combined mask), the image's own tetromino for ``rigid``.

Departures, each because the project's pipeline asks for it: the set's [-1, 1] is mapped to
[0, 1] ((x + 1) / 2, the same affine map for every image, so a model and its gradients see the
same data up to scale and shift); the classes alternate at random from the seed instead of
coming in two halves, so that any first N images are balanced.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

T = np.array([[1, 0], [1, 1], [1, 0]], dtype=np.float64)
L = np.array([[1, 0], [1, 0], [1, 1]], dtype=np.float64)
SCENARIOS = ("linear", "multiplicative", "rigid", "xor")
BACKGROUNDS = ("white", "correlated")
SIZES = (8, 64)
# alpha: the signal's weight in the mix, per image size, scenario and background (the
# benchmark's data_config.json for 8x8 and 64x64).
ALPHAS = {
    8: {
        "linear": {"white": 0.18, "correlated": 0.0125},
        "multiplicative": {"white": 0.7, "correlated": 0.1},
        "rigid": {"white": 0.65, "correlated": 0.2},
        "xor": {"white": 0.35, "correlated": 0.15},
    },
    64: {
        "linear": {"white": 0.03, "correlated": 0.02},
        "multiplicative": {"white": 0.65, "correlated": 0.05},
        "rigid": {"white": 0.575, "correlated": 0.375},
        "xor": {"white": 0.075, "correlated": 0.03},
    },
}
POSITIONS = {8: ((1, 1), (4, 5)), 64: ((8, 8), (32, 40))}  # T's and L's top-left corner
BLOCK = {8: 1, 64: 8}  # pixels per tetromino cell; rigid 64x64: 4
NOISE_SD = 0.5
SMOOTHING = {8: 3.0, 64: 10.0}  # the correlated background's blur, in pixels
PATTERN_BLUR = 1.5  # 64x64 tetrominoes are blurred
MASK_THRESHOLD = 0.05  # a blurred tetromino's pixel counts from this value on


@dataclass(frozen=True)
class Generated:
    images: np.ndarray  # (N, H, W) float64 in [0, 1]
    labels: np.ndarray  # (N,) 0 (T) or 1 (L)
    masks: np.ndarray  # (N, H, W) bool: the ground truth
    alpha: float


def _cell(shape: np.ndarray, size: int, block: int) -> np.ndarray:
    """A tetromino as pixels: each cell a ``block`` x ``block`` square, blurred when large."""
    from scipy import ndimage

    pattern = np.kron(shape, np.ones((block, block)))
    return ndimage.gaussian_filter(pattern, PATTERN_BLUR) if block > 3 else pattern


def _placed(pattern: np.ndarray, size: int, corner: tuple[int, int]) -> np.ndarray:
    image = np.zeros((size, size))
    rows, columns = pattern.shape
    image[corner[0] : corner[0] + rows, corner[1] : corner[1] + columns] = pattern
    return image


def signals(
    scenario: str, labels: np.ndarray, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Each image's signal (the tetromino(es), signed for ``xor``) and its ground-truth mask."""
    corners = POSITIONS[size]
    if scenario == "rigid":
        block = 4 if size == 64 else BLOCK[size]
        patterns = np.zeros((len(labels), size, size))
        for index, label in enumerate(labels):
            shape = np.rot90(T if label == 0 else L, k=int(rng.integers(4)))
            pattern = _cell(shape, size, block)
            corner = tuple(int(rng.integers(size - extent + 1)) for extent in pattern.shape)
            patterns[index] = _placed(pattern, size, corner)
        return patterns, np.abs(patterns) >= (MASK_THRESHOLD if block > 3 else 0.5)
    t = _placed(_cell(T, size, BLOCK[size]), size, corners[0])
    el = _placed(_cell(L, size, BLOCK[size]), size, corners[1])
    if scenario == "xor":
        first = rng.choice([-1.0, 1.0], size=len(labels))
        second = np.where(labels == 0, first, -first)  # equal signs: class 0
        patterns = first[:, None, None] * t + second[:, None, None] * el
    elif scenario in ("linear", "multiplicative"):
        patterns = np.where((labels == 0)[:, None, None], t, el)
    else:
        raise ValueError(f"no scenario {scenario!r}; the scenarios: {', '.join(SCENARIOS)}")
    union = (np.abs(t) >= MASK_THRESHOLD) | (np.abs(el) >= MASK_THRESHOLD)
    return patterns, np.broadcast_to(union, patterns.shape).copy()


def background(kind: str, count: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """White noise N(0, 0.5²) per pixel, or that noise blurred over each image's rows and
    columns (``correlated``)."""
    from scipy import ndimage

    noise = rng.normal(0.0, NOISE_SD, (count, size, size))
    if kind == "white":
        return noise
    if kind == "correlated":
        return ndimage.gaussian_filter(noise, (0, SMOOTHING[size], SMOOTHING[size]))
    raise ValueError(f"no background {kind!r}; the backgrounds: {', '.join(BACKGROUNDS)}")


def mixed(scenario: str, signal: np.ndarray, noise: np.ndarray, alpha: float) -> np.ndarray:
    """The images in [-1, 1]: signal and noise each scaled by the whole set's Frobenius norm,
    added with weights alpha and 1 - alpha (multiplicative: the noise times 1 - alpha x the
    signal), the set divided by its largest absolute value."""
    noise = noise / np.linalg.norm(noise)
    if scenario == "multiplicative":
        factor = 1.0 - alpha * signal
        images = factor / np.linalg.norm(factor) * noise
    else:
        images = alpha * signal / np.linalg.norm(signal) + (1.0 - alpha) * noise
    return images / np.abs(images).max()


def generate(
    scenario: str,
    background_kind: str,
    count: int,
    seed: int,
    size: int = 8,
    alpha: float | None = None,
) -> Generated:
    """``count`` images of a scenario and background, from ``seed`` (the classes alternate at
    random, half each up to one); alpha None is the published setting."""
    if size not in SIZES:
        raise ValueError(f"no size {size}; the sizes: {', '.join(map(str, SIZES))}")
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(count) % 2)
    weight = ALPHAS[size][scenario][background_kind] if alpha is None else float(alpha)
    signal, masks = signals(scenario, labels, size, rng)
    noise = background(background_kind, count, size, rng)
    images = (mixed(scenario, signal, noise, weight) + 1.0) / 2.0
    return Generated(images, labels.astype(np.int64), masks, weight)
