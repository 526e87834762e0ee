"""One vocabulary for what a config key is for (src/common/keys.py): the launcher's waves and
the model cache split jobs identically, for every key of every config group."""

from __future__ import annotations

import copy
import json

import pytest
from omegaconf import OmegaConf

from src.common import keys
from src.common.keys import Role, role
from src.common.names import is_setting
from src.common.paths import group_options
from src.models.cache import fingerprint
from src.sweep.jobs import sweep_name_overrides
from src.sweep.launcher import model_group

# The configs every key is varied from: the default, and the planted shortcut, whose
# dataset.shortcut.* keys exist only there.
BASES = ([], ["experiment=shortcut"])


def test_roles_by_key_parent_and_default():
    assert role("train.epochs") is Role.LENGTH
    assert role("train.learning_rate") is Role.TRAINING  # train's own role
    assert role("+analyzer.params.epsilon") is Role.EXPLANATION  # its section's
    assert role("~evaluate") is Role.EXPLANATION
    assert role("explain.batch_size") is Role.SPEED
    assert role("dataset.path") is Role.DATA_SOURCE
    assert role("dataset.class_names") is Role.TRAINING  # their count sizes the output layer
    assert role("hydra.launcher.n_jobs") is Role.RECORDS
    # A config group nobody classified changes the training: never a shared model by mistake.
    assert role("augment.flip") is Role.TRAINING


def test_the_training_part_is_the_keys_whose_role_is_training():
    config = {
        "seed": 3,
        "threads": 2,
        "dataset": {"name": "d", "path": "/x", "class_names": ["a"], "shortcut": {"size": 4}},
        "train": {"epochs": 5, "batch_size": 64, "reuse": True},
        "analyzer": {"name": "gradient"},
        "augment": {"flip": True},
    }
    assert keys.training_part(config) == {
        "seed": 3,
        "dataset.name": "d",
        "dataset.class_names": ["a"],
        "dataset.shortcut.size": 4,
        "train.batch_size": 64,
        "augment.flip": True,
    }


def test_every_top_level_key_of_the_config_has_a_role_of_its_own(compose_config):
    """A new config group must be placed in the table (it would count as training until then)."""
    for base in BASES:
        for key in compose_config(*base):
            assert key in keys.ROLES, f"{key}: add it to src/common/keys.py's ROLES"


def other_value(value):
    """A value of the same kind that differs from ``value``."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 2 + 0.5
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, list):
        return [*value, 1]
    return 1  # None


def hydra_value(value) -> str:
    """``value`` in Hydra's override grammar (JSON, but a dict's keys unquoted)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {hydra_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(hydra_value(v) for v in value) + "]"
    return json.dumps(value)


def with_value(config: dict, key: str, value) -> dict:
    """A copy of ``config`` whose ``key`` (dotted) is ``value``: what ``++key=value`` composes."""
    changed = copy.deepcopy(config)
    *path, last = key.split(".")
    section = changed
    for part in path:
        section = section[part]
    section[last] = value
    return changed


def same_wave_and_cache(first, second, checksum: str) -> tuple[bool, bool]:
    """Whether two jobs (each: its overrides and its resolved config) are in one wave, and
    whether they share a cached training (``checksum``: the second job's data's)."""
    (first_overrides, first_config), (second_overrides, second_config) = first, second
    same_wave = model_group(first_overrides) == model_group(second_overrides)
    # TensorFlow's intra-op threads: the config's, or (null) one per core of this 2-core machine.
    same_cache = fingerprint(first_config, "data", first_config["threads"] or 2) == fingerprint(
        second_config, checksum, second_config["threads"] or 2
    )
    return same_wave, same_cache


def resolved(compose_config, *overrides: str) -> dict:
    return OmegaConf.to_container(compose_config(*overrides), resolve=True)


@pytest.mark.parametrize("base", BASES, ids=["default", "shortcut"])
def test_waves_and_the_cache_split_jobs_identically_for_every_key(compose_config, base):
    job = [*base, "seed=0"]
    config = resolved(compose_config, *job)
    for key, value in keys.flattened(config):
        value = other_value(value)
        override = f"++{key}={hydra_value(value)}"
        if key.startswith("dataset.shortcut") or key == "train.epochs":  # Hydra composes it too
            assert resolved(compose_config, *job, override) == with_value(config, key, value)
        # Another data file is other data: its checksum differs (the cache reads the content).
        checksum = "other data" if role(key) is Role.DATA_SOURCE else "data"
        other = ([*job, override], with_value(config, key, value))
        same_wave, same_cache = same_wave_and_cache((job, config), other, checksum)
        assert same_wave == same_cache, (key, same_wave, same_cache)
        assert same_cache == (role(key) not in keys.DECIDE_TRAINING), key
    assert len(list(keys.flattened(config))) > 60


@pytest.mark.parametrize("group", ["dataset", "model", "train", "analyzer", "explain", "evaluate"])
def test_waves_and_the_cache_split_jobs_identically_for_every_option_of_a_group(
    compose_config, group
):
    default = resolved(compose_config, "seed=0")
    for option in group_options(group):
        job = ["seed=0", f"{group}={option}"]
        config = resolved(compose_config, *job)
        if config == default:
            continue  # the default option
        checksum = "other data" if group == "dataset" else "data"  # another dataset: other data
        same_wave, same_cache = same_wave_and_cache((["seed=0"], default), (job, config), checksum)
        assert same_wave == same_cache, (group, option, same_wave, same_cache)


def test_the_planted_shortcut_is_another_training(compose_config):
    """A found defect: the shortcut's data was fingerprinted as the clean data (its checksum is
    taken before the marker is planted), so `experiment=shortcut` reused a model trained on the
    same data without the marker."""
    clean = OmegaConf.to_container(compose_config("dataset=fashion_mnist"), resolve=True)
    planted = OmegaConf.to_container(compose_config("experiment=shortcut"), resolve=True)
    assert fingerprint(clean, "data", 2) != fingerprint(planted, "data", 2)


def test_names_and_the_parent_name_read_the_same_roles():
    assert is_setting("analyzer.params.epsilon") and is_setting("train.learning_rate")
    assert not is_setting("train.epochs") and not is_setting("seed")
    assert not is_setting("dataset.path") and not is_setting("explain.batch_size")
    assert not is_setting("tracking.dir") and not is_setting("train.reuse")
    assert sweep_name_overrides(["train.reuse=false", "report.grid_images=4", "seed=0,1"]) == [
        "seed=0,1"
    ]
