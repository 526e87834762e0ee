"""In one process: analysis throughput (project vs bare ``analyze()``), FLOP counts, sgemm peak.

    python -m benchmarks.analysis --data data.npz --n-images 1000 --reps 3

Prints one JSON object. Run by ``benchmarks/run.py`` in its own process, so its TensorFlow
state and memory stay out of the other measurements.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from src.common.paths import CONFIG_DIR
from src.common.tf_runtime import innvestigate, reset, tensorflow
from src.config.cli import register_resolvers
from src.data import Dataset, load_dataset
from src.explain.configured import analysis_batch, explainer_for
from src.models.configured import build_model, train_model
from src.models.training import compile_model

# The seed report's three analyzers and three more expensive ones.
ANALYZERS = (
    "deep_taylor",
    "gradient",
    "input_t_gradient",
    "lrp_epsilon",
    "smoothgrad",
    "integrated_gradients",
)


def config(data: str, *overrides: str):
    register_resolvers()
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose("config", [f"dataset.path={data}", *overrides])


def time_call(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def throughput(data: Dataset, cfg_for, model, n_images: int, reps: int, analyzers) -> dict:
    """Images per second on the first ``n_images`` test images, the project's ``Explainer``
    as a run calls it and a bare loop of ``analyzer.analyze(batch)`` at 256 samples per call,
    alternating."""
    inn = innvestigate()
    images = data.test_images[:n_images]
    predictions = model.predict(images, batch_size=256, verbose=0).argmax(axis=1)
    results = {}
    for name in analyzers:
        cfg = cfg_for(name)
        # The bare script calls analyze() with 256 samples (images x samples drawn per image);
        # the project as a run does (several such batches per call where the analyzer draws).
        batch = analysis_batch(cfg, cfg.evaluate.batch_size)
        project, per_call = explainer_for(cfg, model, cfg.evaluate.batch_size)
        method, params = cfg.analyzer.method, dict(cfg.analyzer.params)
        # The bare script runs iNNvestigate's own SmoothGrad, which takes no seed (and ignores
        # noise_scale): the same work per image as the project's adapter.
        params.pop("seed", None)
        bare = inn.create_analyzer(method, inn.model_wo_softmax(model), **params)
        bare.create_analyzer_model()

        def run_project(project=project, per_call=per_call):
            project.explain(images, predictions, per_call)

        def run_bare(bare=bare, batch=batch):
            heatmaps = [
                bare.analyze(images[start : start + batch])
                for start in range(0, len(images), batch)
            ]
            np.concatenate(heatmaps)  # kept, as the project keeps them

        # One warm-up call each: the first session run of a new graph part sets it up.
        project.explain(images[:per_call], predictions[:per_call], per_call)
        bare.analyze(images[:batch])
        project_s, bare_s = [], []
        for rep in range(reps):
            order = ((run_project, project_s), (run_bare, bare_s))
            for function, times in order if rep % 2 == 0 else order[::-1]:
                times.append(time_call(function))
        ratios = [b / p for p, b in zip(project_s, bare_s, strict=True)]  # project/bare speed
        results[name] = {
            "batch_images": batch,
            "project_call_images": per_call,
            "project_images_per_s": n_images / statistics.median(project_s),
            "bare_images_per_s": n_images / statistics.median(bare_s),
            "ratio_median": statistics.median(ratios),
            "ratio_min": min(ratios),
            "ratio_max": max(ratios),
        }
    return results


def _float_ops() -> int:
    """FLOPs of the default graph's ops, as TensorFlow's profiler counts them (initialisers
    left out)."""
    tf = tensorflow()
    builder = tf.compat.v1.profiler.ProfileOptionBuilder
    options = builder(builder.float_operation()).with_empty_output().build()
    options["hide_name_regexes"] = [".*Initializer.*"]
    graph = tf.compat.v1.get_default_graph()
    return tf.compat.v1.profiler.profile(graph, options=options).total_float_ops


def _fixed_batch(cfg, batch: int):
    """The config's model in a fresh graph with a fixed batch size: the profiler counts only
    ops whose shapes are fully known."""
    reset(0)
    return instantiate(
        cfg.model, input_shape=(28, 28, 1), num_classes=10, batch_size=batch, _convert_="all"
    )


def flop_counts(cfg, cfg_for, analyzers) -> dict:
    """FLOPs per image from the model's own graph, as TensorFlow's profiler counts them.

    Each count is taken at batch 1 and batch 2 and differenced, so per-batch work (the
    optimiser's update) is not charged to each image. SmoothGrad and Integrated Gradients tile
    each image into ``augment_by_n`` / ``steps`` samples inside the graph, which a fixed batch
    size cannot express: they count as that many gradients.
    """
    inn = innvestigate()

    def per_image(extend) -> tuple[int, int]:
        """(FLOPs of the model's forward pass, FLOPs that ``extend`` adds), per image."""
        counts = []
        for batch in (1, 2):
            fixed = _fixed_batch(cfg, batch)
            model_only = _float_ops()
            extend(fixed)
            counts.append((model_only, _float_ops() - model_only))
        return counts[1][0] - counts[0][0], counts[1][1] - counts[0][1]

    def train_function(fixed):
        compile_model(fixed, "adam", 0.001)
        fixed._make_train_function()

    def analyzer_model(method: str, params: dict):
        def build(fixed):
            model = inn.model_wo_softmax(fixed)
            inn.create_analyzer(method, model, **params).create_analyzer_model()

        return build

    forward, backward_and_update = per_image(train_function)
    result = {"forward": forward, "train_step": forward + backward_and_update}
    for name in analyzers:
        params = dict(cfg_for(name).analyzer.params)
        samples = int(params.pop("augment_by_n", 1)) * int(params.pop("steps", 1))
        method = "gradient" if samples > 1 else cfg_for(name).analyzer.method
        params = {} if samples > 1 else params
        result[f"analysis_{name}"] = samples * per_image(analyzer_model(method, params))[1]
    return result


def sgemm_peak(size: int = 2048, reps: int = 5) -> float:
    """GFLOP/s of TensorFlow's float32 matmul (size x size) on this machine's cores, best of
    ``reps``: the practical peak the training's convolutions are compared with."""
    tf = tensorflow()
    reset(0)
    # A variable, not a constant: Grappler would fold a constant product away.
    a = tf.Variable(np.random.default_rng(0).random((size, size), dtype=np.float32))
    product = tf.reduce_sum(tf.matmul(a, a))
    session = tf.compat.v1.keras.backend.get_session()
    session.run(a.initializer)
    session.run(product)
    best = min(time_call(lambda: session.run(product)) for _ in range(reps))
    return 2 * size**3 / best / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--n-images", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--train-epochs", type=int, default=1)
    parser.add_argument("--analyzers", default=",".join(ANALYZERS))
    args = parser.parse_args()
    analyzers = args.analyzers.split(",")

    base = [f"dataset={args.dataset}", f"train.epochs={args.train_epochs}"]
    configs = {name: config(args.data, *base, f"analyzer={name}") for name in analyzers}
    cfg = configs[analyzers[0]]
    data = load_dataset(cfg.dataset.name, path=cfg.dataset.path)
    # First, on fresh graphs: after the trained model's analyzers, iNNvestigate's gradient
    # layers no longer build at a fixed batch size in this process.
    flops = flop_counts(cfg, configs.get, analyzers)
    model = build_model(cfg, data.input_shape, data.num_classes)
    train_model(cfg, data, model)
    result = {
        "n_images": min(args.n_images, len(data.test_images)),
        "throughput": throughput(data, configs.get, model, args.n_images, args.reps, analyzers),
        "flops": flops,
        "sgemm_gflops": sgemm_peak(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
