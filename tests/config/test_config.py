from __future__ import annotations

import pytest

from src.common.errors import UserError
from src.common.paths import group_options
from src.config.checks import validate
from src.config.cli import check_group_overrides
from src.explain.heatmaps import validate_analyzer_method
from src.tracking.records import flatten

GROUPS = (
    "dataset",
    "model",
    "train",
    "analyzer",
    "explain",
    "evaluate",
    "tracking",
    "paths",
    "experiment",
)


def test_the_groups_the_issue_asks_for_exist():
    assert set(group_options("dataset")) == {
        *("mnist", "fashion_mnist", "digits"),
        *("npz", "image_folder", "cifar10", "xai_tris"),
    }
    assert set(group_options("model")) == {
        *("cnn", "cnn_small", "lenet", "mlp", "resnet", "keras_file", "run"),
    }
    seed_analyzers = {"deep_taylor", "gradient", "input_t_gradient"}
    others = {"deep_taylor_bounded", "lrp_z", "lrp_epsilon", "lrp_alpha_2_beta_1"}
    others |= {"lrp_sequential_preset_a", "smoothgrad", "integrated_gradients"}
    others |= {"guided_backprop", "deconvnet", "random", "smoothgrad_squared", "vargrad"}
    assert seed_analyzers | others <= set(group_options("analyzer"))
    assert group_options("experiment") == ["roar", "seed_report", "shortcut", "xai_tris"]


@pytest.mark.parametrize(
    "group, option",
    [(group, option) for group in GROUPS for option in group_options(group)],
)
def test_every_group_option_composes_and_validates(compose_config, group, option):
    cfg = compose_config(f"{group}={option}")
    validate(cfg)
    if group in ("dataset", "analyzer"):
        assert cfg[group].name == option


def test_every_analyzer_names_a_known_method(compose_config):
    from src.explain.analyzers import known_methods

    known = known_methods()
    for option in group_options("analyzer"):
        validate_analyzer_method(compose_config(f"analyzer={option}").analyzer.method, known)


def test_seed_report_is_the_reports_setup(compose_config):
    cfg = compose_config("experiment=seed_report")
    assert (cfg.dataset.name, cfg.analyzer.name) == ("mnist", "deep_taylor")
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.optimizer) == (5, 64, "adam")
    assert cfg.explain.n_images == 10


def test_store_and_outputs_are_anchored_at_the_project_root(monkeypatch, tmp_path):
    from hydra import compose, initialize_config_dir

    from src.common.paths import CONFIG_DIR, PROJECT_ROOT

    monkeypatch.chdir(tmp_path)
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="config")
    assert cfg.tracking.dir == str(PROJECT_ROOT / "mlruns")
    assert cfg.paths.output_dir == str(PROJECT_ROOT / "outputs")


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.epochs=0", "train.epochs must be a positive integer, got 0"),
        ("train.epochs=-3", "train.epochs must be a positive integer, got -3"),
        ("train.epochs=abc", "train.epochs must be a positive integer, got 'abc'"),
        ("train.batch_size=0", "train.batch_size must be a positive integer, got 0"),
        ("train.learning_rate=-1", "train.learning_rate must be a positive number"),
        ("train.optimizer=adamw2", "unknown train.optimizer 'adamw2'; choose one of: adam, sgd"),
        ("dataset.name=", "dataset.name must be a non-empty name"),
        ("dataset.train_size=0", "dataset.train_size must be a positive integer"),
        ("analyzer.neuron_selection=max", "choose one of: predicted, true_label"),
        ("seed=-1", "seed must be an integer from 0 to 4294967295, got -1"),
        ("seed=4294967296", "seed must be an integer from 0 to 4294967295"),
        ("evaluate.n_images=0", "evaluate.n_images must be a positive integer, got 0"),
        ("evaluate.perturbation.function=blur", "choose one of: gaussian, zeros, mean, invert"),
        ("+evaluate.scores.fidelity=true", "unknown score evaluate.scores.fidelity; choose from"),
        ("evaluate.scores.road=yes", "evaluate.scores.road must be true or false, got 'yes'"),
        ("evaluate.road.percentages=[10,100]", "above 0 and below 100"),
        ("evaluate.faithfulness_correlation.runs=1", "runs must be an integer >= 2"),
        ("evaluate=full evaluate.robustness.samples=0", "robustness.samples must be a positive"),
        ("evaluate=full evaluate.robustness.radius=-1", "robustness.radius must be a positive"),
        (
            "evaluate=full evaluate.robustness.n_images=2000",
            "evaluate.robustness.n_images is 2000, more than the 1000 scored images",
        ),
        ("experiment=shortcut dataset.shortcut.size=0", "dataset.shortcut.size must be a positive"),
        ("experiment=shortcut dataset.shortcut.share=-0.1", "share must be a number from 0 to 1"),
        (
            "experiment=shortcut dataset.shortcut.size=9",
            "10 markers of 9x9 pixels (one per class) do not fit apart along the border",
        ),
        (
            "experiment=shortcut dataset.shortcut.positions=[[0,0]]",
            "dataset.shortcut.positions has 1 positions; the data has 10 classes",
        ),
        ("evaluate.perturbation.region_shape=[7]", "region_shape must be [height, width], got [7]"),
        (
            "dataset=digits +dataset.path=/data",
            "unknown key dataset.path: src.data.load_digits takes no arguments",
        ),
        (
            "+dataset.colour=1",
            "unknown key dataset.colour: src.data.load_mnist takes path, cache_dir",
        ),
        ("model=mlp model.hidden_units=[0]", "model.hidden_units.0 must be a positive integer"),
        ("model.conv_layers.0.filters=0", "model.conv_layers.0.filters must be a positive integer"),
        (
            "evaluate.perturbation.region_shape=[29,4]",
            "evaluate.perturbation.region_shape [29, 4] does not fit in the 28x28 images",
        ),
        (
            "evaluate.perturbation.steps=17",
            "evaluate.perturbation.steps is 17, but the images have only 16 regions of 7x7",
        ),
        (
            "analyzer=smoothgrad analyzer.params.augment_by_n=0",
            "analyzer.params.augment_by_n must be a positive integer, got 0",
        ),
        (
            "analyzer=integrated_gradients analyzer.params.steps=-1",
            "analyzer.params.steps must be a positive integer, got -1",
        ),
    ],
)
def test_bad_values_fail_with_one_line(compose_config, override, message):
    with pytest.raises(UserError) as error:
        validate(compose_config(*override.split()))
    assert message in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["analyzer=nope"],
            "unknown analyzer 'nope'; choose one of: blurred_noise, deconvnet, deep_taylor",
        ),
        (
            ["dataset=imagenet"],
            "unknown dataset 'imagenet'; choose one of: cifar10, digits, fashion_mnist, "
            "image_folder, mnist, npz",
        ),
        (
            ["model=vgg"],
            "unknown model 'vgg'; choose one of: cnn, cnn_small, keras_file, lenet, mlp, resnet, "
            "run",
        ),
        (["-m", "analyzer=gradient,nope"], "unknown analyzer 'nope'"),
    ],
)
def test_unknown_group_options_are_named_with_the_choices(argv, message):
    with pytest.raises(UserError, match=message):
        check_group_overrides(argv)


def test_known_group_options_and_value_overrides_pass():
    check_group_overrides(["-m", "analyzer=gradient,deep_taylor", "seed=0,1", "train.epochs=3"])
    check_group_overrides(["dataset=digits", "+experiment=seed_report", "hydra/launcher=basic"])


def test_flatten_uses_dotted_keys_and_keeps_lists():
    assert flatten({"a": {"b": 1, "c": {"d": None}}, "e": [1, 2], "f": {}}) == {
        "a.b": 1,
        "a.c.d": None,
        "e": [1, 2],
        "f": {},
    }


def test_one_experiment_per_dataset_and_the_ui_where_make_serves_it(compose_config, monkeypatch):
    from src.config.checks import validate

    cfg = compose_config("dataset=fashion_mnist")
    assert cfg.tracking.experiment_name == "xai-lab-fashion_mnist"
    assert (cfg.tracking.ui_host, cfg.tracking.ui_port) == ("127.0.0.1", 5000)
    assert compose_config("tracking.experiment_name=mine").tracking.experiment_name == "mine"
    # `make train PORT=5123 HOST=0.0.0.0` exports these; the run's link then uses them.
    monkeypatch.setenv("XAI_LAB_UI_PORT", "5123")
    monkeypatch.setenv("XAI_LAB_UI_HOST", "0.0.0.0")
    cfg = compose_config()
    validate(cfg)
    assert (cfg.tracking.ui_host, int(cfg.tracking.ui_port)) == ("0.0.0.0", 5123)
    monkeypatch.setenv("XAI_LAB_UI_PORT", "70000")
    with pytest.raises(UserError, match="tracking.ui_port must be a port number from 1 to 65535"):
        validate(compose_config())
