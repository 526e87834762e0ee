"""Explanation-quality scores on a small trained model (TensorFlow, no MLflow)."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf, open_dict

from src.common.tf_runtime import innvestigate, tensorflow
from src.data import load_dataset
from src.explain.heatmaps import Explainer, create_analyzer
from src.models.configured import build_model, train_model
from src.scores import evaluate
from src.scores.configured import evaluate_model
from src.scores.faithfulness import perturbation_correct
from src.scores.metrics import aopc, conservation_error, randomisation_similarity, rank_correlation
from src.scores.random_logit import random_logit_similarity
from src.scores.randomisation import cascade
from src.scores.registry import Context

OVERRIDES = ["dataset=digits", "train.epochs=3", "evaluate.n_images=200"]


def config(*overrides: str):
    from hydra import compose, initialize_config_dir

    from src.common.paths import CONFIG_DIR

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=[*OVERRIDES, *overrides])


@pytest.fixture(scope="module")
def trained():
    """The seed CNN after 3 epochs on the digits (about 0.85 test accuracy), with its config."""
    cfg = config()
    data = load_dataset("digits")
    model = build_model(cfg, data.input_shape, data.num_classes)
    train_model(cfg, data, model)
    return cfg, data, model


def gradient_explainer(model) -> Explainer:
    """iNNvestigate's gradient, explaining the classes it is given."""
    return Explainer(
        create_analyzer(innvestigate().model_wo_softmax(model), "gradient", {}, "true_label"),
        "true_label",
    )


def channels_last(inputs: np.ndarray) -> np.ndarray:
    """Quantus hands explain functions its channels-first copy of the (grey) images."""
    return np.moveaxis(inputs, 1, -1) if inputs.shape[1] == 1 else inputs


def quantus_inputs(model, images, labels, original, explain_func) -> dict:
    """A Quantus metric's call arguments for channels-last images and their maps."""
    return dict(
        model=model,
        x_batch=images,
        y_batch=labels,
        a_batch=original,
        explain_func=explain_func,
        channel_first=False,
    )


def scores_of(trained, analyzer: str):
    _, data, model = trained
    return evaluate_model(config(f"analyzer={analyzer}"), data, model)


def test_input_times_gradient_beats_the_random_order_and_noise_does_not(trained):
    explained = scores_of(trained, "input_t_gradient")
    random = scores_of(trained, "noise")
    assert explained.scores["aopc_random"] < explained.scores["aopc"]
    assert explained.scores["aopc_gain"] > 0.1
    assert random.scores["aopc"] < explained.scores["aopc"]
    # The curves start from the unperturbed accuracy and end lower.
    assert explained.perturbation_curve[0] == pytest.approx(explained.random_curve[0])
    assert explained.perturbation_curve[-1] < explained.perturbation_curve[0]
    assert len(explained.perturbation_curve) == trained[0].evaluate.perturbation.steps + 1


def test_randomisation_decorrelates_noise_and_restores_the_trained_weights(trained):
    cfg, data, model = trained
    weights_before = model.get_weights()
    random = scores_of(trained, "noise")
    gradient = scores_of(trained, "gradient")
    assert abs(random.scores["mprt"]) < 0.1  # fresh noise each time: nothing to keep
    assert abs(random.scores["emprt"]) < 0.05  # noise's entropy before and after: the same
    assert gradient.scores["mprt"] > random.scores["mprt"]
    assert gradient.scores["emprt"] > 0  # randomisation makes the gradient noisier
    assert random.randomised_layers == ["output", "dense1", "conv3", "conv2", "conv1"]
    assert len(gradient.randomisation_curve) == 5
    # Cascading: each further layer re-initialised moves the heatmaps further from the original.
    assert gradient.randomisation_curve[-1] < gradient.randomisation_curve[0] - 0.03
    assert len(gradient.randomisation_examples) == 6  # the original, then one per layer
    for before, after in zip(weights_before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(before, after)


def test_an_unrandomised_model_correlates_perfectly_with_itself(trained):
    cfg, data, model = trained
    explainer = gradient_explainer(model)
    images, labels = data.test_images[:50], data.test_labels[:50]
    first = explainer.explain(images, labels, 16).heatmaps
    second = explainer.explain(images, labels, 16).heatmaps
    np.testing.assert_allclose(rank_correlation(first, second), 1.0)


def only(cfg, *names: str):
    """The evaluate config with only the named scores switched on."""
    return OmegaConf.merge(
        cfg.evaluate, {"scores": {name: name in names for name in cfg.evaluate.scores}}
    )


def test_each_score_can_be_switched_off(trained):
    cfg, data, model = trained
    evaluation = evaluate(
        only(cfg, "complexity", "conservation", "blank_maps"),
        model,
        data.test_images[:20],
        data.test_labels[:20],
        lambda images, classes, _: images - 0.5,
        by_label=False,
        method="lrp.z",
        seed=0,
    )
    assert set(evaluation.scores) == {
        "blank_fraction",
        "gini",
        "conservation_error",
        "relevance_blowup_share",
    }
    assert evaluation.perturbation_curve is None and evaluation.randomisation_curve is None
    assert set(evaluation.seconds) == {"complexity", "conservation", "blank_maps"}


def test_lrp_z_conserves_the_logit_on_a_bias_free_network():
    # Built in the current graph (no reset: the module's trained model lives there too).
    keras = tensorflow().keras
    model = keras.Sequential(
        [
            keras.layers.Input((28, 28, 1)),
            keras.layers.Conv2D(4, 3, activation="relu", use_bias=False),
            keras.layers.Flatten(),
            keras.layers.Dense(16, activation="relu", use_bias=False),
            keras.layers.Dense(10, activation="softmax", use_bias=False),
        ]
    )
    images = np.random.default_rng(0).random((8, 28, 28, 1)).astype(np.float32)
    wo_softmax = innvestigate().model_wo_softmax(model)
    logits = wo_softmax.predict(images, verbose=0)
    classes = logits.argmax(axis=1)
    explainer = Explainer(create_analyzer(wo_softmax, "lrp.z", {}, "true_label"), "true_label")
    heatmaps = explainer.explain(images, classes, 4).heatmaps
    errors = conservation_error(heatmaps, logits[np.arange(8), classes])
    assert errors.max() < 1e-3
    # ...while a heatmap that is not relevance does not conserve it.
    assert conservation_error(images, logits[np.arange(8), classes]).min() > 0.1


def test_perturbation_uses_innvestigates_perturbation_on_the_given_heatmaps(trained):
    cfg, data, model = trained
    images, labels = data.test_images[:64], data.test_labels[:64]
    # Relevance = the image itself: perturbing the brightest regions first hurts most.
    context = Context(cfg.evaluate, model, images, labels, labels, None, None, None, "", 0)
    settings = cfg.evaluate.perturbation
    by_brightness = perturbation_correct(context, settings, images).mean(1)
    by_darkness = perturbation_correct(context, settings, 1 - images).mean(1)
    assert aopc(by_brightness) > aopc(by_darkness)
    assert by_brightness[0] == pytest.approx(model.evaluate(images, labels, verbose=0)[1])


@pytest.mark.parametrize("shape, region", [((5, 28, 28, 1), (7, 7)), ((4, 10, 11, 3), (3, 4))])
def test_the_batched_gaussian_regions_are_innvestigates_to_the_bit(shape, region):
    """The Gaussian perturbation draws its regions in one call per batch: the images are
    iNNvestigate's own loop's, drawn from a generator of the same seed, bit for bit (colour
    images and regions that need padding too), at every number of regions perturbed."""
    from src.common.tf_runtime import innvestigate
    from src.scores.faithfulness import _perturbation_class, perturbation_function

    innvestigate()  # iNNvestigate's tools, after graph mode
    from innvestigate.tools.perturbate import Perturbation

    rng = np.random.default_rng(0)
    images = rng.random(shape).astype(np.float32)
    heatmaps = rng.normal(size=shape).astype(np.float32)
    settings = dict(region_shape=region, in_place=False, value_range=(0.0, 1.0))
    loop_noise, batched_noise = np.random.default_rng(5), np.random.default_rng(5)
    theirs = Perturbation(perturbation_function("gaussian", loop_noise), **settings)
    ours = _perturbation_class()(perturbation_function("gaussian", batched_noise), **settings)
    ours.gaussian_noise = batched_noise
    for regions in (0, 1, 3, 7):
        theirs.num_perturbed_regions = ours.num_perturbed_regions = regions
        expected = theirs.perturbate_on_batch(images, heatmaps)
        found = ours.perturbate_on_batch(images, heatmaps)
        np.testing.assert_array_equal(found, expected)
        assert found.dtype == expected.dtype
        assert regions == 0 or not np.array_equal(found, images)


def test_baselines_sit_where_the_protocol_puts_them(trained):
    """input and edge never look at the model: randomising it leaves them unchanged (MPRT 1,
    eMPRT 0); a fresh noise map has nothing to lose (MPRT ~ 0) and explains nothing."""
    for name in ("input", "edge"):
        scores = scores_of(trained, name).scores
        assert scores["mprt"] == scores["mprt_full"] == 1.0, name
        assert scores["emprt"] == 0.0, name
        assert scores["random_logit"] == 1.0, name  # the same map whatever the class
    noise = scores_of(trained, "noise").scores
    assert abs(noise["mprt_full"]) < 0.1 and abs(noise["random_logit"]) < 0.2


def test_edge_is_the_sobel_magnitude_by_hand():
    from src.explain.analyzers import EdgeBaseline

    # A vertical step from 0 to 1 between columns 1 and 2: Sobel across columns gives
    # (1 + 2 + 1) * (1 - 0) = 4 on the two columns beside the step, rows give 0.
    image = np.zeros((1, 4, 4, 1), dtype=np.float32)
    image[:, :, 2:] = 1.0
    edges = EdgeBaseline().analyze(image)[0, :, :, 0]
    np.testing.assert_allclose(edges, [[0, 4, 4, 0]] * 4)


def test_laplace_and_blurred_noise_by_hand():
    from scipy import ndimage

    from src.explain.analyzers import BlurredNoiseBaseline, LaplaceBaseline, NoiseBaseline

    # One bright pixel in the middle of a 3x3 image: the Laplacian is -4 there, +1 at its four
    # direct neighbours, 0 at the corners (edges repeat the border: mode nearest).
    image = np.zeros((1, 3, 3, 1), dtype=np.float32)
    image[0, 1, 1, 0] = 1.0
    laplace = LaplaceBaseline().analyze(image)[0, :, :, 0]
    np.testing.assert_allclose(laplace, [[0, 1, 0], [1, -4, 1], [0, 1, 0]])
    # The blurred noise is the noise baseline's draw of the same seed, blurred within each
    # image and channel only.
    images = np.zeros((2, 6, 6, 2), dtype=np.float32)
    noise = NoiseBaseline(seed=5).analyze(images).astype(np.float64)
    blurred = BlurredNoiseBaseline(seed=5, sigma=1.5).analyze(images)
    expected = ndimage.gaussian_filter(noise, (0, 1.5, 1.5, 0), mode="nearest")
    np.testing.assert_allclose(blurred, expected, rtol=1e-5, atol=1e-6)


def test_mprt_agrees_with_quantus_on_its_own_terms(trained, monkeypatch):
    """Quantus's MPRT, given a model wrapper that randomises as the project does (its own
    TensorFlow wrapper re-initialises the whole clone), computes the same per-layer
    similarities on every image whose maps are not blank; it gives NaN where one is."""
    from src.scores.libraries import _quantus

    quantus = _quantus()
    cfg, data, model = trained
    images, labels = data.test_images[:24], data.test_labels[:24]
    explainer = gradient_explainer(model)

    def explain(images, classes, _=""):
        return explainer.explain(images, classes, 24).heatmaps

    original = explain(images, labels)
    ours = [randomisation_similarity(original, explain(images, labels)) for _ in cascade(model, 5)]

    def cascading(self, order="top_down", seed=42):
        for name in cascade(self.model, 5):
            yield name, self.model

    monkeypatch.setattr(
        quantus.helpers.model.tf_model.TensorFlowModel, "get_random_layer_generator", cascading
    )

    def explain_func(model, inputs, targets, **_):
        return explain(channels_last(inputs), targets)

    metric = quantus.MPRT(disable_warnings=True, abs=True, normalise=True)
    scores = metric(**quantus_inputs(model, images, labels, original, explain_func))
    theirs = [np.array(values) for key, values in scores.items() if key != "original"]
    assert len(theirs) == len(ours) == 5
    for step_ours, step_theirs in zip(ours, theirs, strict=True):
        defined = ~np.isnan(step_theirs)
        assert defined.sum() >= 20
        np.testing.assert_allclose(step_ours[defined], step_theirs[defined], atol=1e-6)


def test_random_logit_agrees_with_quantus_given_the_same_other_classes(trained):
    """Quantus's RandomLogit with each map normalised by its own max, as the project does."""
    from src.scores.libraries import _quantus

    quantus = _quantus()
    cfg, data, model = trained
    images, labels = data.test_images[:16], data.test_labels[:16]
    explainer = gradient_explainer(model)
    asked = []

    def explain_func(model, inputs, targets, **_):
        asked.append(np.asarray(targets))
        nhwc = channels_last(inputs)
        return explainer.explain(nhwc, np.asarray(targets), 16).heatmaps

    original = explainer.explain(images, labels, 16).heatmaps
    # Per-image normalisation: Quantus's default divides by the max over the whole batch, so an
    # image's score would depend on the other images it is scored with.
    theirs = quantus.RandomLogit(
        num_classes=10, disable_warnings=True, normalise_func_kwargs={"normalise_axes": (1, 2, 3)}
    )(**quantus_inputs(model, images, labels, original, explain_func))
    others = asked[-1]
    assert not np.any(others == labels)
    off = explainer.explain(images, others, 16).heatmaps
    np.testing.assert_allclose(random_logit_similarity(original, off), theirs, atol=1e-6)
    assert np.all(random_logit_similarity(original, original) == 1.0)
    # Each map is divided by its own max |value|: a map and its triple are the same map.
    np.testing.assert_allclose(random_logit_similarity(original, 3 * original), 1.0, atol=1e-9)
    assert random_logit_similarity(np.zeros((1, 4, 4)), np.zeros((1, 4, 4)))[0] == 1.0


def test_scores_do_not_depend_on_numpys_global_random_state(trained):
    """Training advances np.random's global state and a reused model skips training: a score
    that drew from it would differ between the two (found: eval_aopc 0.46638 vs 0.46972)."""
    cfg, data, model = trained
    runs = []
    for global_seed in (1, 2):
        np.random.seed(global_seed)
        runs.append(evaluate_model(config("analyzer=noise", "evaluate.n_images=40"), data, model))
    first, second = runs
    assert first.scores == second.scores
    for key, values in first.per_image.items():
        np.testing.assert_array_equal(values, second.per_image[key])


def test_alpha_beta_blowup_is_measured_and_warned_about(trained):
    cfg, data, model = trained
    images, labels = data.test_images[:20], data.test_labels[:20]
    logits = innvestigate().model_wo_softmax(model).predict(images, verbose=0)
    explained = logits[np.arange(20), logits.argmax(axis=1)]
    only_conservation = only(cfg, "conservation")

    def maps_summing_to(factors):
        def explain(images, classes, _):
            maps = np.zeros(images.shape, dtype=np.float32)
            maps[:, 0, 0, 0] = explained * factors  # each map sums to factor x its logit
            return maps

        return explain

    # 2 of 20 images over 2x: 10% > 5% -> a warning; 1 of 20 (5%): none.
    for over, warned in ((2, True), (1, False)):
        factors = np.ones(20)
        factors[:over] = 3.0
        evaluation = evaluate(
            only_conservation,
            model,
            images,
            labels,
            maps_summing_to(factors),
            False,
            "lrp.alpha_2_beta_1",
            0,
        )
        assert evaluation.scores["relevance_blowup_share"] == pytest.approx(over / 20)
        assert bool(evaluation.warnings) == warned


def test_emprt_agrees_with_quantus_given_the_same_randomised_network(trained, monkeypatch):
    """Quantus's EfficientMPRT (skip_layers=True: only the fully randomised network counts),
    handed a copy of the model that the project randomises, against the project's eMPRT."""
    from src.scores.libraries import _quantus
    from src.scores.metrics import emprt

    quantus = _quantus()
    cfg, data, model = trained
    images, labels = data.test_images[:16], data.test_labels[:16]
    keras = tensorflow().keras
    # Quantus explains "the original" only after its generator's first step, so the
    # randomised network must be a copy (as Quantus's own wrapper makes one).
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    explainers = {
        id(network): Explainer(
            create_analyzer(innvestigate().model_wo_softmax(network), "gradient", {}, "true_label"),
            "true_label",
        )
        for network in (model, copy)
    }

    def explain(network, images, classes):
        return explainers[id(network)].explain(images, np.asarray(classes), 16).heatmaps

    original = explain(model, images, labels)
    for _ in cascade(copy, 9):
        fully_randomised = explain(copy, images, labels)  # after the last step: every layer new
    ours = emprt(original, fully_randomised)

    def randomised(self, order="bottom_up", seed=42):
        for name in cascade(copy, 9):
            yield name, copy

    wrapper = quantus.helpers.model.tf_model.TensorFlowModel
    monkeypatch.setattr(wrapper, "get_random_layer_generator", randomised)
    # Quantus 0.6's EfficientMPRT predicts on its channels-first copy of the images, which a
    # channels-last Keras model refuses; the predictions only feed its optional extra scores.
    monkeypatch.setattr(
        wrapper, "predict", lambda self, x, **_: self.model.predict(np.moveaxis(x, 1, -1))
    )

    def explain_func(model, inputs, targets, **_):
        nhwc = channels_last(inputs)
        return explain(model, nhwc, targets)

    theirs = quantus.EfficientMPRT(complexity_func_kwargs={"n_bins": 100}, disable_warnings=True)(
        **quantus_inputs(model, images, labels, original, explain_func)
    )
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)


def test_the_new_faithfulness_scores_rank_a_real_explanation_above_noise(trained):
    explained = scores_of(trained, "input_t_gradient").scores
    noise = scores_of(trained, "noise").scores
    for name in ("abpc", "faithfulness_correlation", "road"):
        assert explained[name] > noise[name] + 0.05, name
    # Least relevant first barely hurts a real explanation; most relevant first does.
    assert explained["aopc_lerf"] < explained["aopc"] - 0.2
    assert explained["abpc"] == pytest.approx(explained["aopc"] - explained["aopc_lerf"])
    assert abs(noise["faithfulness_correlation"]) < 0.1


def robustness_of(trained, explain, samples=3, count=10):
    from src.scores.registry import Evaluation  # noqa: F401 - the result type

    cfg, data, model = trained
    settings = OmegaConf.merge(
        only(cfg, "robustness"), {"robustness": {"n_images": count, "samples": samples}}
    )
    images, labels = data.test_images[:count], data.test_labels[:count]
    return evaluate(settings, model, images, labels, explain, True, "gradient", 0), images


def quantus_robustness(model, images, classes, heatmaps, explain, samples, seed):
    """Quantus 0.6's MaxSensitivity and LocalLipschitzEstimate as the project called them
    before it computed them itself: its perturb_func fed from the same seeded generators."""
    from src.scores.libraries import _quantus
    from src.scores.registry import LIPSCHITZ_NOISE, SENSITIVITY_NOISE, generator
    from src.scores.robustness import normalise_each_by_max

    quantus = _quantus()

    def seeded(noise, kind):
        def perturb(arr, indices=None, indexed_axes=None, **settings):
            if kind == "uniform":
                bound = settings["lower_bound"]
                return (arr + noise.uniform(-bound, bound, size=arr.shape)).astype(arr.dtype)
            delta = noise.normal(settings["perturb_mean"], settings["perturb_std"], arr.shape)
            return (arr + delta).astype(arr.dtype)

        return perturb

    def explain_func(model, inputs, targets, **_):
        return explain(np.ascontiguousarray(inputs, np.float32), targets, "")

    common = dict(nr_samples=samples, disable_warnings=True)
    metrics = {
        "max_sensitivity": quantus.MaxSensitivity(
            lower_bound=0.2,
            perturb_func=seeded(generator(seed, SENSITIVITY_NOISE), "uniform"),
            **common,
        ),
        "local_lipschitz": quantus.LocalLipschitzEstimate(
            normalise_func=normalise_each_by_max,
            perturb_std=0.1,
            perturb_func=seeded(generator(seed, LIPSCHITZ_NOISE), "normal"),
            **common,
        ),
    }
    return {
        name: np.asarray(
            metric(
                model=model,
                x_batch=images,
                y_batch=classes,
                a_batch=heatmaps,
                explain_func=explain_func,
                channel_first=False,
                batch_size=len(images),
            ),
            dtype=np.float64,
        )
        for name, metric in metrics.items()
    }


def test_robustness_is_quantus_to_the_bit_grey_and_colour(trained):
    """The project's max-sensitivity and local Lipschitz equal Quantus's metrics' numbers bit
    for bit on the trained model's gradient maps; and on three-channel images, where Quantus
    draws its noise channels first, max-sensitivity is as worked out by hand. Quantus refused
    the colour maps as the project handed them: robustness went unscored (NaN, with a warning)
    on every colour model."""
    cfg, data, model = trained
    explainer = gradient_explainer(model)
    images, labels = data.test_images[:12], data.test_labels[:12]

    def explain(images, classes, _=""):
        return explainer.explain(images, np.asarray(classes), 5).heatmaps

    heatmaps = explain(images, labels)
    settings = OmegaConf.merge(
        only(cfg, "robustness"), {"robustness": {"n_images": 12, "samples": 4}}
    )
    ours = evaluate(settings, model, images, labels, explain, True, "gradient", 7).per_image
    theirs = quantus_robustness(model, images, labels, heatmaps, explain, 4, 7)
    for name in theirs:
        np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)

    keras = tensorflow().keras
    colour = keras.Sequential(
        [keras.layers.Flatten(input_shape=(5, 4, 3)), keras.layers.Dense(2, activation="softmax")]
    )
    rgb = np.random.default_rng(3).random((6, 5, 4, 3)).astype(np.float32)
    weights = np.random.default_rng(4).normal(size=(5, 4, 3)).astype(np.float32)

    def squared(images, classes, _=""):  # a map that moves with every pixel and channel
        return (images**2 * weights).astype(np.float32)

    classes = np.zeros(6, dtype=int)
    ours = evaluate(settings, colour, rgb, classes, squared, True, "gradient", 7).per_image
    # Quantus 0.6 refuses the maps as the project handed them (channels last, as the images):
    # it checks them against its channels-first copy of the images.
    with pytest.raises(AssertionError, match="dimensions of attribution and input"):
        quantus_robustness(colour, rgb, classes, squared(rgb, classes), squared, 4, 7)
    # By hand, as Quantus draws: one row per image, channels first.
    from src.scores.registry import SENSITIVITY_NOISE, generator

    draws = generator(7, SENSITIVITY_NOISE)
    rows = np.moveaxis(rgb, -1, 1).reshape(6, -1)
    original = squared(rgb, classes).reshape(6, -1)
    ratios = []
    for _ in range(4):
        noisy = (rows + draws.uniform(-0.2, 0.2, size=rows.shape)).astype(np.float32)
        moved = squared(np.moveaxis(noisy.reshape(6, 3, 5, 4), 1, -1), classes).reshape(6, -1)
        ratios.append(np.linalg.norm(original - moved, axis=1) / np.linalg.norm(original, axis=1))
    np.testing.assert_allclose(ours["max_sensitivity"], np.max(ratios, axis=0), rtol=1e-6)
    assert np.isfinite(ours["local_lipschitz"]).all()


def test_robustness_by_hand(trained):
    from src.scores.registry import LIPSCHITZ_NOISE, SENSITIVITY_NOISE, generator

    # A map that is the input itself moves exactly as much as the input: max_s |d_s| / |x|.
    result, images = robustness_of(trained, lambda images, classes, _: images.copy())
    flat = images.reshape(len(images), -1)
    draws = generator(0, SENSITIVITY_NOISE)
    ratios = []
    for _ in range(3):
        noisy = (flat + draws.uniform(-0.2, 0.2, size=flat.shape)).astype(np.float32)
        ratios.append(np.linalg.norm(noisy - flat, axis=1) / np.linalg.norm(flat, axis=1))
    np.testing.assert_allclose(result.per_image["max_sensitivity"], np.max(ratios, axis=0), 1e-5)
    # Local Lipschitz of the same map, each normalised by its max: |x/m - x'/m'| / |x - x'|.
    draws = generator(0, LIPSCHITZ_NOISE)
    ratios = []
    for _ in range(3):
        noisy = (flat + draws.normal(0.0, 0.1, size=flat.shape)).astype(np.float32)
        a = flat / np.abs(flat).max(axis=1, keepdims=True)
        b = noisy / np.abs(noisy).max(axis=1, keepdims=True)
        ratios.append(np.linalg.norm(a - b, axis=1) / np.linalg.norm(flat - noisy, axis=1))
    np.testing.assert_allclose(result.per_image["local_lipschitz"], np.max(ratios, axis=0), 1e-5)

    # A map that ignores its input does not move at all.
    pattern = np.random.default_rng(8).random(images.shape[1:]).astype(np.float32)
    still, _ = robustness_of(
        trained, lambda images, classes, _: np.broadcast_to(pattern, images.shape).copy()
    )
    assert still.scores["max_sensitivity"] == 0.0 and still.scores["local_lipschitz"] == 0.0
    # Pure noise, drawn afresh on every call, moves as much as it is large: ~sqrt(2) x itself.
    fresh = np.random.default_rng(9)
    noisy, _ = robustness_of(trained, lambda images, classes, _: fresh.normal(size=images.shape))
    assert noisy.scores["max_sensitivity"] > 1.3
    # Seeded: the same scores again.
    again, _ = robustness_of(trained, lambda images, classes, _: images.copy())
    assert again.scores == result.scores
    # Blank maps (Quantus refuses a batch of them): undefined, none scored.
    blank, _ = robustness_of(trained, lambda images, classes, _: np.zeros_like(images))
    assert np.isnan(blank.per_image["max_sensitivity"]).all()
    assert "max_sensitivity" not in blank.scores


def test_robustness_explains_its_noisy_copies_together_unless_a_map_depends_on_its_place(
    trained,
):
    """Several samples' copies go through one call of the explainer (fewer, larger calls; the
    maps of an image do not depend on the others in its call, a test above checks Quantus's
    numbers to the bit); SmoothGrad's noise depends on an image's place in a call, so its
    copies are explained one sample per call, as Quantus calls it, and get the same maps."""
    cfg, data, model = trained
    settings = OmegaConf.merge(
        only(cfg, "robustness"), {"robustness": {"n_images": 10, "samples": 3}}
    )
    images, labels = data.test_images[:10], data.test_labels[:10]

    def by_place(calls):
        def explain(images, classes, _=""):  # a map that depends on its place in the call
            calls.append(len(images))
            return images * np.arange(1, len(images) + 1).reshape(-1, 1, 1, 1)

        return explain

    scored = {}
    for method in ("gradient", "smoothgrad"):
        calls = []
        scored[method] = evaluate(settings, model, images, labels, by_place(calls), True, method, 0)
        scored[method, "calls"] = calls
    assert scored["gradient", "calls"] == [10, 30, 30]  # the maps, then 3 samples per metric
    assert scored["smoothgrad", "calls"] == [10] * 7
    # One sample per call: each copy's map is its image times the image's place, as the
    # original's is: max-sensitivity is that of the noise alone, as by hand.
    from src.scores.registry import SENSITIVITY_NOISE, generator

    draws = generator(0, SENSITIVITY_NOISE)
    flat = images.reshape(10, -1)
    place = np.arange(1, 11).reshape(-1, 1)
    ratios = []
    for _ in range(3):
        noisy = (flat + draws.uniform(-0.2, 0.2, size=flat.shape)).astype(np.float32)
        ratios.append(
            np.linalg.norm(place * (noisy - flat), axis=1) / np.linalg.norm(place * flat, axis=1)
        )
    np.testing.assert_allclose(
        scored["smoothgrad"].per_image["max_sensitivity"], np.max(ratios, axis=0), rtol=1e-5
    )


def test_localisation_finds_a_planted_marker_in_a_map_that_is_the_mask(trained):
    cfg, data, model = trained
    images, labels = data.test_images[:20], data.test_labels[:20]
    masks = np.zeros(images.shape[:3], dtype=bool)
    masks[:, 2:6, 3:7] = True

    def scored(explain):
        return evaluate(
            only(cfg, "localisation"), model, images, labels, explain, True, "x", 0, masks
        )

    exact = scored(lambda images, classes, _: masks[..., None].astype(np.float32)).scores
    assert exact["relevance_mass_accuracy"] == exact["relevance_rank_accuracy"] == 1.0
    assert exact["pointing_game"] == 1.0
    assert "emd_score" not in exact  # its own switch, evaluate.scores.emd
    with_emd = evaluate(
        only(cfg, "localisation", "emd"),
        model,
        images,
        labels,
        lambda images, classes, _: masks[..., None].astype(np.float32),
        True,
        "x",
        0,
        masks,
    )
    assert with_emd.scores["emd_score"] == 1.0  # nothing to move
    assert set(with_emd.seconds) == {"localisation", "emd"}
    blank = evaluate(
        only(cfg, "emd"),
        model,
        images,
        labels,
        lambda i, c, _: np.zeros_like(i),
        True,
        "x",
        0,
        masks,
    )
    assert blank.scores["emd_score"] == 0.0  # a blank map localises nothing
    fresh = np.random.default_rng(1)
    noise = scored(lambda images, classes, _: fresh.normal(size=images.shape)).scores
    share = masks[0].mean()  # 16 of 784 pixels: noise scores about that
    assert abs(noise["relevance_mass_accuracy"] - share) < 0.02
    assert noise["relevance_rank_accuracy"] < 0.2 and noise["pointing_game"] < 0.3


@pytest.fixture
def a_new_score():
    """A score added the way the README says: one registered class (and a config switch)."""
    from src.scores.registry import _REGISTRY, Better, Metric, Score, register

    @register
    class PositiveShare(Score):
        name = "positive_share"
        needs = frozenset({"heatmaps"})
        default = False
        metrics = (
            Metric(
                "positive_share",
                "share of positive relevance",
                Better.HIGHER,
                criterion="pos",
                short="Pos",
            ),
        )

        def compute(self, context, settings, result):
            result.record("positive_share", (context.heatmaps > 0).mean(axis=(1, 2, 3)))

    yield PositiveShare
    del _REGISTRY["positive_share"]


def test_a_new_score_is_one_registered_class(trained, a_new_score):
    from src.report.verdict import registry_criteria
    from src.scores import SCORES
    from src.scores.registry import markdown_table

    cfg, data, model = trained
    switched = only(cfg)
    with open_dict(switched):  # the config entry a new score adds to conf/evaluate/default.yaml
        switched.scores.positive_share = True
    images, labels = data.test_images[:10], data.test_labels[:10]
    result = evaluate(switched, model, images, labels, lambda x, c, _: x - 0.5, True, "x", 0)
    assert set(result.scores) == {"positive_share"}
    assert result.per_image["positive_share"].shape == (10,)
    assert "positive_share" in SCORES
    assert registry_criteria()[-1].score == "positive_share"
    assert "`eval_positive_share`" in markdown_table(SCORES)
