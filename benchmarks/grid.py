"""Time and peak memory of drawing a sweep's heatmap grid, on synthetic explanations:
``python benchmarks/grid.py --analyzers 20 --images 1000`` prints one JSON line.

Run from a checkout's root (it draws with that checkout's ``src``), so the code before the
grid was bounded (``--before``: it drew every explained image) can be measured beside the
current one. Synthetic 28x28 maps: drawing cost does not depend on what the maps show.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import sys
import time
from types import SimpleNamespace

import numpy as np


def jobs(analyzers: int, images: int) -> list:
    from src.report.queries import Job

    rng = np.random.default_rng(0)
    labels = np.arange(images) % 10
    shared = {
        "images": rng.uniform(size=(images, 28, 28, 1)).astype(np.float32),
        "labels": labels,
        "predictions": labels,
        "explained_classes": labels,
        "class_names": np.array([str(k) for k in range(10)]),
    }
    made = []
    for index in range(analyzers):
        params = {"analyzer.method": "gradient", "analyzer.name": f"analyzer_{index:02d}"}
        run = SimpleNamespace(
            data=SimpleNamespace(params=params, tags={"dataset": "synthetic"}),
            info=SimpleNamespace(run_name=f"analyzer_{index:02d}", run_id=str(index)),
        )
        arrays = {**shared, "heatmaps": rng.normal(size=(images, 28, 28, 1)).astype(np.float32)}
        made.append(Job(run, f"analyzer_{index:02d}", "signed", 0, 5, arrays, {}))
    return made


def draw(made: list, before: bool) -> bytes:
    from src.report import figures, grid

    if before:  # the grid as it was: every explained image, one column each
        reference = made[0].arrays
        figure = grid.comparison_grid(
            reference["images"],
            reference["labels"],
            [(job.analyzer, job.arrays["heatmaps"], job.display) for job in made],
            [str(k) for k in range(10)],
            title="before",
        )
    else:
        from src.report.sections import heatmap_grid

        figure = heatmap_grid(made, None, 5, 0, grid_images=10)
    buffer = io.BytesIO()
    figures.save_figure(figure, buffer)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--analyzers", type=int, default=20)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--before", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, os.getcwd())  # this checkout's src
    made = jobs(args.analyzers, args.images)
    start = time.perf_counter()
    png = draw(made, args.before)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "analyzers": args.analyzers,
                "images": args.images,
                "before": args.before,
                "seconds": round(seconds, 2),
                "peak_rss_mb": round(peak, 1),
                "png_mb": round(len(png) / 2**20, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
