"""In one process: seconds per score per analyzer, on one trained model.

    python -m benchmarks.scoring --data data.npz --n-images 1000

For each analyzer, in one process on the same model and images, one after another: the scores of
``evaluate=default``, the scores of the reference commit (MoRF and random-order
perturbation, MPRT/eMPRT, random logit, Gini, conservation: ``evaluate=default`` without
LeRF, faithfulness correlation and ROAD), ``evaluate=full`` (robustness too) and
``evaluate=meta`` (the default scores and their meta-evaluation, whose own cost is ``meta`` in
its ``per_score_s``). Prints one JSON object. Run by ``benchmarks/run.py`` in its own
process, and once more with ``PYTHONPATH`` on the reference commit's checkout
(``--sets=default``): that checkout's own default scores are the cost the new ones are held to.
"""

from __future__ import annotations

import argparse
import json
import time

from benchmarks.analysis import ANALYZERS, config
from src.data import load_dataset

try:
    from src.common.tf_runtime import configure_threads, limit_library_threads
    from src.models.configured import build_model, train_model
    from src.scores.configured import evaluate_model
except ModuleNotFoundError:  # run with PYTHONPATH on SCORING_BASELINE's checkout: a flat src/
    from src.experiment import build_model, evaluate_model, train_model

    configure_threads = limit_library_threads = None  # it ran with the libraries' defaults

# The set of scores of the reference commit: what the default ones are held to.
BEFORE = (
    "evaluate.perturbation.lerf=false",
    "evaluate.scores.faithfulness_correlation=false",
    "evaluate.scores.road=false",
)
SETS = {"before": BEFORE, "default": (), "full": ("evaluate=full",), "meta": ("evaluate=meta",)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--n-images", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--analyzers", default=",".join(ANALYZERS))
    parser.add_argument(
        "--sets",
        default=",".join(SETS),
        help="which score sets; 'default' alone for an older checkout's own default scores",
    )
    parser.add_argument(
        "--quick-meta",
        action="store_true",
        help="the meta-evaluation on 20 images with one perturbation per test (a smoke test)",
    )
    parser.add_argument(
        "--library-threads",
        type=int,
        default=None,
        help="BLAS/OpenMP threads instead of the project's policy (the libraries' default: "
        "one per core), to measure what the policy changes",
    )
    args = parser.parse_args()
    if configure_threads is not None:  # as a run sets them (src.train)
        configure_threads(None)
        if args.library_threads:
            limit_library_threads(args.library_threads)
    sets = {name: SETS[name] for name in args.sets.split(",")}
    if args.quick_meta and "meta" in sets:
        sets["meta"] += ("evaluate.meta.n_images=20", "evaluate.meta.perturbations=1")

    common = (f"evaluate.n_images={args.n_images}", f"train.epochs={args.epochs}")
    cfg = config(args.data, *common)
    data = load_dataset("mnist", path=args.data)
    model = build_model(cfg, data.input_shape, data.num_classes)
    train_model(cfg, data, model)
    results = {}
    for analyzer in args.analyzers.split(","):
        results[analyzer] = {}
        for name, overrides in sets.items():
            scored = config(args.data, *common, f"analyzer={analyzer}", *overrides)
            started = time.perf_counter()
            evaluation = evaluate_model(scored, data, model)
            results[analyzer][name] = {
                "total_s": time.perf_counter() - started,
                # An older checkout (the baseline) does not time each score.
                "per_score_s": getattr(evaluation, "seconds", {}),
            }
    print(json.dumps({"n_images": min(args.n_images, len(data.test_images)), **results}))


if __name__ == "__main__":
    main()
