"""The one thread policy (src/common/tf_runtime.py): NumPy's and SciPy's BLAS pools at one thread,
SciPy's own OpenBLAS included, whatever was imported before; TensorFlow's threads as set."""

from __future__ import annotations

import json
import subprocess
import sys

from src.common.paths import PROJECT_ROOT

# NumPy only, as Hydra leaves the process: SciPy's OpenBLAS is not loaded yet when the policy is
# set. Before it, every pool has one thread per core (OpenBLAS's default).
SCRIPT = """
import json, numpy
from threadpoolctl import threadpool_info
from src.common.tf_runtime import configure_threads, tensorflow
tensorflow()
import scipy.linalg
before = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
policy = configure_threads(1)
after = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
print(json.dumps({"before": before, "after": after, "policy": policy}))
"""


def run_policy(env_threads: str) -> dict:
    import os

    env = {**os.environ, "OPENBLAS_NUM_THREADS": env_threads}  # the library's default, made 2
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_blas_pool_gets_one_thread_and_the_policy_says_so():
    found = run_policy("2")
    assert len(found["before"]) == 2, found  # NumPy's OpenBLAS and SciPy's own
    assert found["before"] == [2, 2], found  # as OpenBLAS starts on a 2-core machine
    assert found["after"] == [1, 1], found
    assert found["policy"] == {
        "intra_op_threads": "1",
        "inter_op_threads": "1",
        "threads_blas": "openblas:1,openblas:1",
        "threads_openmp": "none",
    }
