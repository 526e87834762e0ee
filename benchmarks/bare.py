"""The script a user would write instead of the project: Keras fit, then iNNvestigate.

It is the benchmark's baseline, so it does only what such a script does: load the arrays, build
the same CNN (conf/model/cnn.yaml), fit it with validation each epoch, explain a few test images
with each analyzer, and print its timings as one JSON line. No config system, no tracking, no
figures, no op determinism. It does not import the project.

    python benchmarks/bare.py --data fashion.npz --analyzers deep_taylor --epochs 5
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.compat.v1.disable_eager_execution()
import innvestigate  # noqa: E402

# The project's analyzer configs (conf/analyzer/*.yaml) for the analyzers the benchmark uses.
ANALYZERS = {
    "deep_taylor": ("deep_taylor", {}),
    "gradient": ("gradient", {"postprocess": "abs"}),
    "input_t_gradient": ("input_t_gradient", {}),
    "lrp_epsilon": ("lrp.epsilon", {"epsilon": 0.1}),
    "smoothgrad": ("smoothgrad", {"augment_by_n": 64, "noise_scale": 0.1, "postprocess": "abs"}),
    "integrated_gradients": ("integrated_gradients", {"steps": 64, "reference_inputs": 0.0}),
}


def seconds_since_process_start() -> float:
    """Linux: /proc/uptime minus the process's start time (both since boot)."""
    stat = Path("/proc/self/stat").read_text()
    start_ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22: starttime
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return uptime - start_ticks / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="npz with x_train, y_train, x_test, y_test")
    parser.add_argument("--analyzers", default="deep_taylor", help="comma-separated names")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--n-images", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--deterministic", action="store_true", help="op determinism, as the project runs"
    )
    args = parser.parse_args()
    tf.keras.utils.set_random_seed(args.seed)
    if args.deterministic:
        tf.config.experimental.enable_op_determinism()

    with np.load(args.data, allow_pickle=False) as npz:
        x_train = (npz["x_train"].astype("float32") / 255.0)[..., None]
        x_test = (npz["x_test"].astype("float32") / 255.0)[..., None]
        y_train, y_test = npz["y_train"], npz["y_test"]

    layers = tf.keras.layers
    model = tf.keras.Sequential(
        [
            layers.Input(shape=(28, 28, 1)),
            layers.Conv2D(32, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(64, 3, activation="relu"),
            layers.Flatten(),
            layers.Dense(64, activation="relu"),
            layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(
        optimizer=tf.keras.optimizers.legacy.Adam(0.001),  # graph mode needs the legacy one
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )

    first_step: list[float] = []

    class FirstStep(tf.keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if not first_step:
                first_step.append(seconds_since_process_start())

    started = time.perf_counter()
    history = model.fit(
        x_train,
        y_train,
        epochs=args.epochs,
        batch_size=args.batch_size,
        validation_data=(x_test, y_test),
        callbacks=[FirstStep()],
        verbose=0,
    ).history
    train_time_s = time.perf_counter() - started

    images = x_test[: args.n_images]
    model_wo_softmax = innvestigate.model_wo_softmax(model)
    analysis_time_s = 0.0
    for name in args.analyzers.split(","):
        method, params = ANALYZERS[name]
        analyzer = innvestigate.create_analyzer(method, model_wo_softmax, **params)
        started = time.perf_counter()
        analyzer.analyze(images)  # builds the analyzer's graph on the first call
        analysis_time_s += time.perf_counter() - started

    print(
        json.dumps(
            {
                "test_accuracy": float(history["val_accuracy"][-1]),
                "train_time_s": train_time_s,
                "analysis_time_s": analysis_time_s,
                "time_to_first_step_s": first_step[0] if first_step else None,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


if __name__ == "__main__":
    main()
