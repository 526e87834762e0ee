"""In one process: what checking a model snapshot costs, beside loading it and training.

    python -m benchmarks.snapshot --data data.npz --reps 20

One epoch of the project's CNN on the data is trained and snapshot as the model cache does it
(``weights.h5``, ``state.npz``, ``meta.json``); then, ``--reps`` times each, the median of:
writing a snapshot (with its sums), hashing its files (what writing adds), verifying it
(``meta.json`` read and every file hashed: what a continuation adds; a reuse hashes the
weights only), loading it (the weights into the model, the training state read), and
measuring the test accuracy of a reused model (``test_only``). Files are read from the page
cache, as for a snapshot written or read shortly before. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable

from benchmarks.analysis import config
from src.data import load_dataset
from src.models.cache import ModelCache
from src.models.configured import build_model, train_model
from src.models.snapshots import META, STATE, WEIGHTS, file_sha256, verified
from src.models.training import test_only, training_state, weights_image


def median_s(function: Callable[[], object], reps: int) -> float:
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--reps", type=int, default=20)
    args = parser.parse_args()

    cfg = config(args.data, "train.epochs=1")
    data = load_dataset("mnist", path=args.data)
    model = build_model(cfg, data.input_shape, data.num_classes)
    training = train_model(cfg, data, model)
    state = training_state(model)
    with tempfile.TemporaryDirectory() as folder:
        cache = ModelCache(folder)
        cache.store("k", 1, weights_image(model), training, run_id="bench", state=state)
        snapshot = cache.snapshot_folder("k", 1)
        cached = cache.load("k", 1, continuing=True)
        sizes = {name: (snapshot / name).stat().st_size for name in (WEIGHTS, STATE, META)}

        def load() -> None:
            model.load_weights(str(cached.weights))
            cached.state()

        result = {
            "snapshot_bytes": sum(sizes.values()),
            "file_bytes": sizes,
            "train_images": len(data.train_images),
            "test_images": len(data.test_images),
            "reps": args.reps,
            "train_epoch_s": training.train_time_s,
            "write_s": median_s(
                lambda: cache.store(
                    "k", 2, weights_image(model), training, run_id="bench", state=state
                ),
                args.reps,
            ),
            "hash_s": median_s(
                lambda: [file_sha256(snapshot / name) for name in (WEIGHTS, STATE)], args.reps
            ),
            "verify_s": median_s(lambda: verified(snapshot, (WEIGHTS, STATE)), args.reps),
            "verify_weights_s": median_s(lambda: verified(snapshot, (WEIGHTS,)), args.reps),
            "load_s": median_s(load, args.reps),
            "test_only_s": median_s(
                lambda: test_only(model, data.test_images, data.test_labels, cfg.train.batch_size),
                max(3, args.reps // 5),
            ),
        }
    result["ratios"] = {
        "verify_vs_load": result["verify_s"] / result["load_s"],
        "verify_vs_train_epoch": result["verify_s"] / result["train_epoch_s"],
        "test_only_vs_train_epoch": result["test_only_s"] / result["train_epoch_s"],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
