"""The one thread policy (src/common/tf_runtime.py): every BLAS and OpenMP pool at one thread —
NumPy's, SciPy's own OpenBLAS (loaded by the policy itself), and those of libraries loaded
after it (OpenCV's OpenBLAS and scikit-learn's OpenMP, under Quantus); TensorFlow's threads as
set; the run's tags say so."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from src.common.paths import PROJECT_ROOT

# As a run's process is when the policy is set: NumPy imported (Hydra imports it), SciPy's
# linear algebra not yet; Quantus (with OpenCV and scikit-learn) only once scoring starts.
WITH_POLICY = """
import json, numpy
from threadpoolctl import threadpool_info
from src.common.tf_runtime import configure_threads, thread_policy
policy = configure_threads(1)
from src.scores.libraries import _quantus
_quantus()
pools = [[p["user_api"], p["num_threads"], p["filepath"]] for p in threadpool_info()]
print(json.dumps({"policy": policy, "pools": pools, "later": thread_policy()}))
"""
# The same libraries without the policy.
WITHOUT = """
import json, numpy, scipy.linalg
from threadpoolctl import threadpool_info
from src.scores.libraries import _quantus
_quantus()
print(json.dumps([[p["user_api"], p["num_threads"], p["filepath"]] for p in threadpool_info()]))
"""


def run(script: str) -> object:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "2", "OMP_NUM_THREADS": "2"}  # 2 cores' default
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_pool_gets_one_thread_those_loaded_later_too_and_the_tags_say_so():
    without = run(WITHOUT)
    blas = [pool for pool in without if pool[0] == "blas"]
    assert len(blas) >= 3, without  # NumPy's, SciPy's and OpenCV's own OpenBLAS
    # NumPy's and SciPy's OpenBLAS and scikit-learn's OpenMP at the environment's 2 (OpenCV's
    # OpenBLAS 0.3.3 reports 1 to threadpoolctl whatever it runs).
    spread = [pool for pool in without if "opencv" not in pool[2]]
    assert len(spread) >= 3 and all(threads == 2 for _, threads, _ in spread), without

    found = run(WITH_POLICY)
    assert sorted(pool[2] for pool in found["pools"]) == sorted(pool[2] for pool in without)
    assert all(threads == 1 for _, threads, _ in found["pools"]), found["pools"]
    # The tags as the run starts (NumPy's and SciPy's) and once it has scored (all of them).
    assert found["policy"] == {
        "intra_op_threads": "1",
        "inter_op_threads": "1",
        "threads_blas": "openblas:1,openblas:1",
        "threads_openmp": "none",
    }
    later = found["later"]
    assert later["threads_blas"] == ",".join(["openblas:1"] * len(blas))
    openmp = [pool for pool in without if pool[0] == "openmp"]
    assert later["threads_openmp"] == (",".join(["openmp:1"] * len(openmp)) or "none")
