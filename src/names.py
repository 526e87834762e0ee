"""How runs and the rows of a comparison are named: the analyzer, then every setting that
sets the run apart (``lrp_epsilon ε=0.01 · seed 0 · 5 ep``).

A *setting* is a config key that changes what a run computes and is not already in the name:
not the seed or the training length (named on their own), not where a run writes
(``tracking.*``, ``paths.*``, ``hydra.*``), not how fast it runs (threads, batch sizes of
the explanation), not where the data file lies.
"""

from __future__ import annotations

from collections.abc import Iterable

# Keys a name shows on its own, or that do not change what a run computes.
NOT_A_SETTING = frozenset(
    {
        "seed",
        "train.epochs",
        "analyzer",
        "analyzer.name",
        "threads",
        "train.reuse",
        "train.cache_dir",
        "dataset.path",
        "dataset.cache_dir",
        "explain.batch_size",
        "evaluate.batch_size",
        "experiment",
    }
)
NOT_A_SETTING_PREFIXES = ("tracking.", "paths.", "hydra.", "report.")
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
    key = key.lstrip("+~")
    return key not in NOT_A_SETTING and not key.startswith(NOT_A_SETTING_PREFIXES)


def setting_text(key: str, value: object) -> str:
    """``analyzer.params.epsilon``, ``0.01`` -> ``ε=0.01``; a group's choice (``model``,
    ``lenet``) -> ``model=lenet``; other keys by their last part (``train.batch_size=32`` ->
    ``batch_size=32``); a file by its name (``model.path=/data/nets/resnet.keras`` ->
    ``path=resnet.keras``), which is what tells a sweep's files apart in a table's column."""
    leaf = key.lstrip("+~").rsplit(".", 1)[-1]
    if leaf == "path":
        value = str(value).rstrip("/").rsplit("/", 1)[-1]
    return f"{SYMBOLS.get(leaf, leaf)}={value}"


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
    model trained elsewhere came from."""
    label = " ".join([analyzer, *settings])
    return f"{label} · seed {seed} · {source}"
