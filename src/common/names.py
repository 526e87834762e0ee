"""How runs and the rows of a comparison are named: the analyzer, then every setting that
sets the run apart (``lrp_epsilon ε=0.01 · seed 0 · 5 ep``).

A *setting* is a config key that changes what a run computes and is not already in the name:
not the seed or the training length (named on their own), not where a run writes
(``tracking.*``, ``paths.*``, ``hydra.*``), not how fast it runs (threads, batch sizes of
the explanation), not where the data file lies.

Whatever a user typed and MLflow keeps as a name (a metric, param or tag key, a part of an
artifact path, a run's name) goes through :func:`mlflow_name` first, so no value breaks a run or
a sweep's comparison.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable

from src.common import keys

# Keys a name shows on its own (the analyzer, the seed), or that readers do not compare runs by
# although they change the last bits (TensorFlow's threads; a bundle of overrides, named by what
# it sets).
NAMED_APART = frozenset({"seed", "analyzer", "analyzer.name", "threads", "experiment"})
# The usual symbols of the analyzers' parameters, as papers write them.
SYMBOLS = {
    "epsilon": "ε",
    "alpha": "α",
    "beta": "β",
    "noise_scale": "σ",
    "augment_by_n": "n",
    "learning_rate": "lr",
}


def is_setting(key: str) -> bool:
    """Whether ``key`` changes what a run computes (its role, :mod:`src.common.keys`: training or
    explanation; not the training length, where the data lies, speed or records) and is not
    named apart."""
    key = key.lstrip("+~")
    return keys.role(key) in (keys.Role.TRAINING, keys.Role.EXPLANATION) and key not in NAMED_APART


def setting_text(key: str, value: object, others: Iterable[object] = ()) -> str:
    """``analyzer.params.epsilon``, ``0.01`` -> ``ε=0.01``; a group's choice (``model``,
    ``lenet``) -> ``model=lenet``; other keys by their last part (``train.batch_size=32`` ->
    ``batch_size=32``); a file by its name (``model.path=/data/nets/resnet.keras`` ->
    ``path=resnet.keras``), which is what tells a sweep's files apart in a table's column;
    by its whole path if ``others`` (the values it is told apart from) hold another path to a
    file of that name (``a/net.h5`` and ``b/net.h5``)."""
    leaf = key.lstrip("+~").rsplit(".", 1)[-1]
    if leaf == "path":
        name = _file_name(value)
        if not any(_file_name(other) == name and str(other) != str(value) for other in others):
            value = name
    return f"{SYMBOLS.get(leaf, leaf)}={value}"


def _file_name(path: object) -> str:
    return str(path).rstrip("/").rsplit("/", 1)[-1]


def settings_of(overrides: Iterable[str], swept: Iterable[str] | None = None) -> list[str]:
    """The settings among a run's command-line ``overrides`` (``key=value`` each), as
    :func:`setting_text`; in a sweep (``swept``: the keys it varies) only the swept ones,
    since what every job shares does not tell them apart. A single run leaves out the
    dataset, which its experiment already names."""
    swept = None if swept is None else set(swept)
    texts = []
    for override in overrides:
        key, _, value = override.partition("=")
        key = key.lstrip("+~")
        if not is_setting(key):
            continue
        if swept is None and key == "dataset":
            continue
        if swept is not None and key not in swept:
            continue
        texts.append(setting_text(key, value))
    return texts


def run_name(analyzer: str, settings: Iterable[str], seed: int, source: str) -> str:
    """``lrp_epsilon ε=0.01 · seed 0 · 5 ep``: ``source`` is the training length, or where a
    model trained elsewhere came from. Fit for MLflow (:func:`mlflow_name`): settings too long
    are cut (with a hash of them) so that the seed and the source still show."""
    tail = f" · seed {seed} · {source}"
    room = max(MAX_RUN_NAME // 2, MAX_RUN_NAME - len(tail))
    label = mlflow_name(" ".join([analyzer, *settings]), kind="label", limit=room)
    return mlflow_name(label + tail, kind="label")


# MLflow's limits (mlflow.utils.validation, and its database's columns): a metric's, param's or
# tag's key, and a run's name, at most 250 characters; a dataset's name at most 500.
MAX_KEY = 250
MAX_RUN_NAME = 250
MAX_DATASET_NAME = 500
# One part of an artifact path is a file's name, which file systems cap at 255 bytes: room is
# left for what the caller puts around it (``heatmaps_<name>.png``).
MAX_FILE_BYTES = 200
# What MLflow takes in a key: letters and digits of any script (its ``\w``), and _ - . : space
# and /. In one part of an artifact path, not / (it would make folders), nor : (Windows).
_NOT_IN_KEY = re.compile(r"[^\w\-.: /]")
_NOT_IN_FILE = re.compile(r"[^\w\-. ]")
# In a label (a run's name): the characters that are no text (controls, lone surrogates, line
# breaks), which a database or a terminal would choke on.
_NOT_TEXT = {"Cc", "Cs", "Zl", "Zp"}


def mlflow_name(
    text: str, taken: set[str] | None = None, kind: str = "key", limit: int | None = None
) -> str:
    """``text`` as a name MLflow takes, changed only where it must be, and none of ``taken``
    (to which it is added).

    - ``key``: a metric's, param's or tag's key, or an artifact path: a character MLflow refuses
      becomes ``_``; no part of the path is empty, ``.`` or ``..`` (MLflow refuses a name that
      would resolve to another): ``../../evil`` -> ``__/__/evil``, ``/a//b/`` -> ``a/b``;
    - ``file``: one part of an artifact path: the same, and ``/`` and ``:`` become ``_`` too;
    - ``label``: a run's or a dataset's name: only what is no text (controls, line breaks)
      becomes ``_``.

    An empty name is ``_``. A name longer than ``limit`` (characters; UTF-8 bytes for a file;
    by default MLflow's limit) is cut and ends in ``-`` and 8 hex digits of the SHA-256 of
    ``text``, so distinct texts stay distinct; a name in ``taken`` gets ``-2``, ``-3``, ...
    """
    size = _utf8_size if kind == "file" else len
    if kind == "key":
        name, limit = _path_safe(_NOT_IN_KEY.sub("_", text)), limit or MAX_KEY
    elif kind == "file":
        name, limit = _path_safe(_NOT_IN_FILE.sub("_", text)), limit or MAX_FILE_BYTES
    elif kind == "label":
        name = "".join("_" if unicodedata.category(c) in _NOT_TEXT else c for c in text)
        limit = limit or MAX_RUN_NAME
    else:
        raise ValueError(f"unknown kind of name {kind!r}: key, file or label")
    name = name or "_"
    if size(name) > limit:
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        name = _fit(name, f"-{digest[:8]}", limit, size)
    if taken is not None:
        first, count = name, 1
        while name in taken:
            count += 1
            name = _fit(first, f"-{count}", limit, size)
        taken.add(name)
    return name


def _path_safe(name: str) -> str:
    """No empty, ``.`` or ``..`` part, and no start in ``..``: what MLflow's check of a name
    (``posixpath.normpath`` must leave it as it is) wants."""
    parts = ["_" * len(part) if part in (".", "..") else part for part in name.split("/") if part]
    name = "/".join(parts)
    return f"_{name[1:]}" if name.startswith("..") else name


def _fit(name: str, suffix: str, limit: int, size) -> str:
    """``name`` cut so that it ends in ``suffix`` within ``limit``. (A cut part of a path ends in
    the suffix, so it is never ``.`` or ``..``.)"""
    head = name[: max(0, limit - len(suffix))]
    while head and size(head + suffix) > limit:
        head = head[:-1]
    return head + suffix


def _utf8_size(text: str) -> int:
    return len(text.encode("utf-8"))
