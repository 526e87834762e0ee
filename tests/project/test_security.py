"""Safe defaults: the UI and the server listen on loopback unless told otherwise, and no code of
the project loads pickles or models it was not pointed at (read with ``ast``, not grep)."""

from __future__ import annotations

import ast
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from src.common.paths import PROJECT_ROOT

SCANNED = ("src", "benchmarks")
# Calls that run code from the data they read, or evaluate text as code.
UNSAFE = {
    *(
        f"{module}.{name}"
        for module in ("pickle", "_pickle", "cloudpickle", "dill")
        for name in ("load", "loads", "Unpickler")
    ),
    "joblib.load",
    "pandas.read_pickle",
    "marshal.load",
    "marshal.loads",
    "shelve.open",
    *(f"yaml.{name}" for name in ("load", "load_all", "unsafe_load", "unsafe_load_all")),
    *(f"yaml.{name}" for name in ("full_load", "full_load_all")),
    "eval",
    "exec",
}
# Whole models (Keras's, MLflow's flavors', ...) load code and pickles along with weights;
# Keras's CIFAR ``load_batch`` unpickles (src/common/internals.py's ``read_cifar_batch`` wraps it).
MODEL_LOADERS = ("load_model", "load_batch", "read_cifar_batch")
# The loads the project makes on purpose, of what the user names: (file, function) -> why.
INTENDED = {
    ("src/models/zoo.py", "_load_keras2"): "model=keras_file: the model file the user names, its "
    "config checked for code first (load_keras_file)",
    (
        "src/models/zoo.py",
        "load_run_model",
    ): "model=run: the model a run of the user's store logged",
    ("src/data/loaders.py", "_read_cifar_batches"): "dataset=cifar10: CIFAR's own Python batches",
    ("src/common/internals.py", "read_cifar_batch"): "the helper _read_cifar_batches calls (its "
    "callers are checked here too)",
}


def make_dry_run(target: str, *variables: str, **environment: str) -> list[str]:
    """The words of the commands ``make <target>`` would run, printed (``-n``), not run, and
    installing nothing (``-o``); the caller's own make variables are not passed on."""
    inherited = ("HOST", "PORT", "STORE", "BACKEND", "ARTIFACTS", "ARGS", "MAKEFLAGS", "MFLAGS")
    env = {key: value for key, value in os.environ.items() if key not in inherited}
    env.update(environment)
    result = subprocess.run(
        ["make", "-n", "--no-print-directory", "-o", ".venv/.installed", target, *variables],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def host_of(words: list[str]) -> str:
    (index,) = [i for i, word in enumerate(words) if word == "--host"]
    return words[index + 1]


@pytest.mark.parametrize("target", ["ui", "server"])
def test_the_ui_and_the_server_listen_on_loopback_unless_told_otherwise(target):
    words = make_dry_run(target)
    assert words[0] == ".venv/bin/mlflow" and words[1] == target
    assert host_of(words) == "127.0.0.1"
    assert host_of(make_dry_run(target, "HOST=0.0.0.0")) == "0.0.0.0"
    # A HOST in the environment is not the user asking (tcsh exports the host name as HOST).
    assert host_of(make_dry_run(target, HOST="0.0.0.0")) == "127.0.0.1"


def dotted(node: ast.expr, aliases: dict[str, str]) -> str:
    """``np.load`` -> ``numpy.load`` (after ``import numpy as np``); a call in the chain shows
    as ``f()``: ``tensorflow().keras.models.load_model``."""
    if isinstance(node, ast.Name):
        return aliases.get(node.id, node.id)
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value, aliases)}.{node.attr}"
    if isinstance(node, ast.Call):
        return f"{dotted(node.func, aliases)}()"
    return f"<{type(node).__name__}>"


def unsafe_calls(source: str) -> list[tuple[int, str]]:
    """(line, call) for each call in ``source`` that may run code from what it reads."""
    tree = ast.parse(source)
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):  # imports anywhere, also those inside functions
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    aliases[alias.asname] = alias.name
                else:
                    aliases[alias.name.split(".")[0]] = alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = dotted(node.func, aliases)
        if name in UNSAFE or name.split(".")[-1] in MODEL_LOADERS:
            found.append((node.lineno, name))
        elif name == "numpy.load" and not _pickles_refused(node):
            found.append((node.lineno, f"{name} without allow_pickle=False"))
    return sorted(found)


def _pickles_refused(call: ast.Call) -> bool:
    keywords = {keyword.arg: keyword.value for keyword in call.keywords}
    if None in keywords:  # **kwargs: cannot tell
        return False
    value = keywords.get("allow_pickle")
    return isinstance(value, ast.Constant) and value.value is False


def test_the_scan_finds_each_kind_of_unsafe_load_and_passes_safe_ones():
    source = textwrap.dedent(
        """
        import pickle, joblib, yaml
        import numpy as np
        import tensorflow as tf
        from numpy import load
        from pickle import loads as unpickle
        import mlflow.pyfunc
        from src.common.tf_runtime import tensorflow

        pickle.load(f)
        unpickle(b)
        joblib.load(p)
        np.load(p)
        np.load(p, allow_pickle=True)
        load(p, mmap_mode="r")
        np.load(p, **options)
        yaml.load(text, Loader=yaml.Loader)
        yaml.unsafe_load(text)
        eval(text)
        exec(text)
        tf.keras.models.load_model(p)
        tensorflow().keras.models.load_model(p)
        mlflow.pyfunc.load_model(uri)

        np.load(p, allow_pickle=False)
        yaml.safe_load(text)
        ast.literal_eval(text)
        model.load_weights(p)
        """
    )
    found = [name for _, name in unsafe_calls(source)]
    assert found == [
        "pickle.load",
        "pickle.loads",
        "joblib.load",
        "numpy.load without allow_pickle=False",
        "numpy.load without allow_pickle=False",
        "numpy.load without allow_pickle=False",
        "numpy.load without allow_pickle=False",
        "yaml.load",
        "yaml.unsafe_load",
        "eval",
        "exec",
        "tensorflow.keras.models.load_model",
        "src.common.tf_runtime.tensorflow().keras.models.load_model",
        "mlflow.pyfunc.load_model",
    ]


def enclosing_function(source: str, line: int) -> str | None:
    """The name of the innermost function whose body holds ``line``."""
    functions = [
        node
        for node in ast.walk(ast.parse(source))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.lineno <= line <= (node.end_lineno or node.lineno)
    ]
    return max(functions, key=lambda node: node.lineno).name if functions else None


def test_no_code_of_the_project_loads_pickles_or_models_or_evaluates_text():
    """...but where the user names what to load, and only there (INTENDED)."""
    files = sorted(path for folder in SCANNED for path in (PROJECT_ROOT / folder).rglob("*.py"))
    assert any(path.name == "loaders.py" for path in files)
    found, intended = [], set()
    for path in files:
        source = Path(path).read_text()
        relative = str(path.relative_to(PROJECT_ROOT))
        for line, name in unsafe_calls(source):
            place = (relative, enclosing_function(source, line))
            if place in INTENDED:
                intended.add(place)
            else:
                found.append(f"{relative}:{line}: {name}")
    assert found == []
    assert intended == set(INTENDED)  # each exception is still needed
