"""Bad input on the command line, systematically: every override either runs or fails in one
line before any run is created (src.config.cli.preflight, then the run's own checks)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import all_runs, train_cli

from src.common.errors import UserError
from src.common.paths import group_options
from src.config.cli import preflight


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train.foo=1"], "unknown key train.foo: the config has no such key (to add one, write"),
        (["seed=0,1"], "seed=0,1 asks for 2 runs: add -m to sweep over them"),
        (["train.epochs=["], "cannot read the overrides: no viable alternative at input '['"),
        (["paths.output_dir=${oops}"], "paths.output_dir: Interpolation key 'oops' not found"),
        (
            ["-m", "seed=0,1", "train.epochs=1,0"],
            "train.epochs must be a positive integer, got 0 (in the sweep's job seed=0 train.e",
        ),
        (
            ["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=two"],
            "Value 'two' of type 'str' could not be converted to Integer",
        ),
        (["--cfg", "job", "train.foo=1"], "unknown key train.foo"),
        (["tracking.experiment_name="], "tracking.experiment_name must be a non-empty name"),
        (["analyzer=nope"], "unknown analyzer 'nope'; choose one of: blurred_noise, deconvnet"),
    ],
)
def test_preflight_names_the_problem_in_one_line(argv, message):
    with pytest.raises(UserError) as error:
        preflight(argv)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "argv",
    [
        ["dataset=digits", "+train.foo=1"],
        ["-m", "analyzer=gradient,deep_taylor", "seed=0,1", "hydra/launcher=joblib"],
        ["--help", "train.foo=1"],  # help is Hydra's to show, whatever follows
        ["experiment=seed_report"],
        ["model.dense_units=[64,32]", "evaluate=off"],
    ],
)
def test_preflight_lets_good_command_lines_through(argv):
    preflight(argv)


# What a person might type: each setting with right values, wrong types, out-of-range numbers,
# unknown options and odd strings. Values that would make a run long (many epochs, images)
# appear only where they are invalid anyway.
SMALL_COUNT = st.integers(1, 3)
BAD_NUMBER = st.one_of(
    st.integers(-(2**40), 0),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["true", "null", "abc", "'7'", "[1,2]", "{a: 1}", "1e400", "0x10"]),
)
ODD_TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), max_size=12
)


def quoted(text: str) -> str:
    """A string as a quoted Hydra override value."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


ODD_STRING = st.one_of(ODD_TEXT.map(quoted), ODD_TEXT.filter(lambda t: "=" not in t))
SETTINGS = {
    "train.epochs": st.one_of(SMALL_COUNT.map(str), BAD_NUMBER),
    "train.batch_size": st.one_of(st.integers(1, 2**31).map(str), BAD_NUMBER),
    "train.learning_rate": st.one_of(
        st.floats(1e-6, 10).map(repr), BAD_NUMBER, st.sampled_from(["1e-3", "1", "nan"])
    ),
    "train.optimizer": st.one_of(st.sampled_from(["adam", "sgd", "rmsprop"]), ODD_STRING),
    "dataset.train_size": st.one_of(st.integers(1, 150).map(str), BAD_NUMBER),
    "dataset.test_size": st.one_of(st.integers(1, 60).map(str), BAD_NUMBER),
    "explain.n_images": st.one_of(st.integers(1, 12).map(str), BAD_NUMBER),
    "explain.batch_size": st.one_of(st.integers(1, 10**9).map(str), BAD_NUMBER),
    "evaluate.n_images": st.one_of(st.integers(1, 12).map(str), BAD_NUMBER),
    "evaluate.perturbation.steps": st.one_of(st.integers(1, 4).map(str), BAD_NUMBER),
    "evaluate.perturbation.region_shape": st.one_of(
        st.lists(st.integers(-2, 40), min_size=0, max_size=3).map(
            lambda values: "[" + ",".join(map(str, values)) + "]"
        ),
        BAD_NUMBER,
    ),
    "evaluate.randomisation.n_examples": st.one_of(SMALL_COUNT.map(str), BAD_NUMBER),
    "seed": st.one_of(st.integers(-(2**40), 2**40).map(str), BAD_NUMBER),
    "threads": st.one_of(st.integers(-2, 4).map(str), st.just("null"), BAD_NUMBER),
    "analyzer": st.one_of(st.sampled_from(group_options("analyzer")), ODD_STRING),
    "analyzer.neuron_selection": st.one_of(
        st.sampled_from(["predicted", "true_label"]), ODD_STRING
    ),
    "dataset": st.one_of(st.sampled_from(["digits", "mnist"]), ODD_STRING),
    "dataset.path": ODD_STRING,
    "tracking.experiment_name": ODD_STRING,
    "train.foo": SMALL_COUNT.map(str),
    "+train.foo": SMALL_COUNT.map(str),
}
# Settings that exist only for one analyzer come with it.
ANALYZER_SETTINGS = {
    "analyzer.params.augment_by_n": ("smoothgrad", st.one_of(SMALL_COUNT.map(str), BAD_NUMBER)),
    "analyzer.params.noise_scale": ("smoothgrad", st.one_of(st.just("0.5"), BAD_NUMBER)),
    "analyzer.params.steps": ("integrated_gradients", st.one_of(SMALL_COUNT.map(str), BAD_NUMBER)),
    "analyzer.params.epsilon": ("lrp_epsilon", st.one_of(st.just("0.01"), BAD_NUMBER)),
}


def overrides_for(key: str) -> st.SearchStrategy[list[str]]:
    if key in ANALYZER_SETTINGS:
        analyzer, values = ANALYZER_SETTINGS[key]
        return values.map(lambda value: [f"analyzer={analyzer}", f"{key}={value}"])
    return SETTINGS[key].map(lambda value: [f"{key}={value}"])


OVERRIDES = (
    st.lists(st.sampled_from(sorted({*SETTINGS, *ANALYZER_SETTINGS})), max_size=4, unique=True)
    .flatmap(lambda keys: st.tuples(*map(overrides_for, keys)))
    .map(lambda groups: [override for group in groups for override in group])
)


@settings(max_examples=60, deadline=None, database=None, derandomize=True)
@given(OVERRIDES)
def test_preflight_either_passes_or_gives_one_line(overrides):
    try:
        preflight(["dataset=digits", *overrides])
    except UserError as error:
        assert str(error) and "\n" not in str(error)


# A small run, which the generated overrides change (later overrides win).
BASE = [
    "dataset=digits",
    "dataset.train_size=120",
    "dataset.test_size=40",
    "train.epochs=1",
    "explain.n_images=4",
    "evaluate.n_images=8",
    "evaluate.perturbation.steps=3",
    "evaluate.randomisation.n_examples=2",
]


@pytest.mark.slow
@settings(
    max_examples=20,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(OVERRIDES)
def test_every_command_line_runs_or_fails_in_one_line_before_any_run(overrides):
    with tempfile.TemporaryDirectory() as folder:
        tmp_path = Path(folder)
        result = train_cli(tmp_path, *BASE, *overrides, timeout=600)
        runs = all_runs(tmp_path)
        if result.returncode == 0:
            assert [run.info.status for run in runs] == ["FINISHED"], result.stderr[-3000:]
            return
        assert result.returncode == 2, result.stderr[-3000:]
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert "error: " in lines[-1] and "Traceback" not in result.stderr, result.stderr[-3000:]
        assert sum("error:" in line for line in lines) == 1, result.stderr[-3000:]
        assert runs == [], result.stderr[-3000:]


SWEEPS = [
    ["analyzer=gradient,deep_taylor", "seed=0,1", "train.epochs=3"],
    ["seed=range(0,3)", "+model.width=4", "analyzer=noise"],
    ["seed=0,1", "seed=5"],  # a later override of a key replaces the earlier
    ["dataset=digits", "train.epochs=1,2,3", "~evaluate.perturbation"],
    [],
]


@pytest.mark.parametrize("overrides", SWEEPS)
def test_the_sweeps_jobs_are_hydras_basic_sweeper_expansion(overrides):
    """src.config.cli.sweep_jobs uses Hydra's public parser only; its reference is Hydra's internal
    BasicSweeper, which the default, joblib and submitit launchers sweep with."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from src.config.cli import sweep_jobs

    parsed = OverridesParser.create().parse_overrides(overrides)
    expected = [
        sorted(job) for batch in BasicSweeper.split_arguments(parsed, None) for job in batch
    ]
    assert sweep_jobs(overrides) == expected


ARGVS = [
    ["-m", "analyzer=a,b", "seed=0"],
    ["--multirun", "--config-name", "other", "x=1"],
    ["--help"],
    ["--hydra-help"],
    ["--cfg", "job", "--resolve", "-p", "train"],
    ["-i", "config"],
    ["--info"],
    ["-cd", "/tmp/conf", "-cn", "c", "a=1", "b=2"],
    ["--shell-completion", "install=bash"],
]


@pytest.mark.parametrize("argv", ARGVS)
def test_the_command_line_is_read_as_hydra_reads_it(argv):
    from hydra._internal.utils import get_args_parser

    from src.common.internals import hydra_flags_parser

    theirs = vars(get_args_parser().parse_args(argv))
    ours, rest = hydra_flags_parser().parse_known_args(argv)
    assert rest == []
    # --version is an action that prints and exits in Hydra's parser; here a flag.
    ours = {key: value for key, value in vars(ours).items() if key != "version"}
    assert {key: theirs[key] for key in ours} == ours


# -- the baselines a sweep over analyzers adds --------------------------------------------------


@pytest.mark.parametrize(
    "argv, expected, added",
    [
        (  # the card's command: every default baseline, after the analyzers asked for
            ["-m", "dataset=fashion_mnist", "analyzer=deep_taylor,gradient"],
            ["-m", "dataset=fashion_mnist", "analyzer=deep_taylor,gradient,noise,edge,input"],
            ["noise", "edge", "input"],
        ),
        (  # one named already is not run twice; a launcher's override does not stop it
            ["-m", "analyzer=gradient,noise", "hydra/launcher=joblib", "seed=0,1"],
            ["-m", "analyzer=gradient,noise,edge,input", "hydra/launcher=joblib", "seed=0,1"],
            ["edge", "input"],
        ),
        (  # chosen on the command line
            ["-m", "analyzer=gradient,deep_taylor", "compare.baselines=[edge]"],
            ["-m", "analyzer=gradient,deep_taylor,edge", "compare.baselines=[edge]"],
            ["edge"],
        ),
        (["-m", "analyzer=gradient,deep_taylor", "compare.baselines=[]"], None, []),  # opted out
        (["-m", "seed=0,1"], None, []),  # no sweep over analyzers
        (["-m", "analyzer=gradient", "seed=0,1"], None, []),
        (["analyzer=gradient"], None, []),  # a single run
        # A later override replaces the sweep: one analyzer, nothing to compare.
        (["-m", "analyzer=gradient,deep_taylor", "analyzer=noise"], None, []),
        (["-m", "analyzer=glob(lrp_e*)"], None, []),  # preflight says it cannot read it
    ],
)
def test_a_sweep_over_analyzers_adds_the_baselines_it_does_not_name(argv, expected, added):
    from src.config.cli import with_baselines

    assert with_baselines(argv) == (argv if expected is None else expected, added)


def test_a_baseline_that_is_not_one_is_refused_naming_the_baselines():
    from src.config.cli import with_baselines

    with pytest.raises(
        UserError, match="'gradient' is not a baseline; choose from: blurred_noise, edge, input, "
    ):
        with_baselines(["-m", "analyzer=a,b", "compare.baselines=[gradient]"])


# -- the fractions a remove-and-retrain sweep adds ------------------------------------------------


@pytest.mark.parametrize(
    "argv, added",
    [
        (
            ["-m", "experiment=roar", "analyzer=gradient,vargrad"],
            ["0", "10", "30", "50", "70", "90"],
        ),
        (
            ["-m", "experiment=roar", "analyzer=gradient", "roar.fractions=[25,50]"],
            ["0", "25", "50"],
        ),
        (["-m", "experiment=roar", "roar.fractions=[12.5]", "seed=0,1"], ["0", "12.5"]),
    ],
)
def test_a_roar_sweep_adds_its_fractions(argv, added):
    from src.config.cli import with_roar_fractions

    assert with_roar_fractions(argv) == ([*argv, f"roar.fraction={','.join(added)}"], added)


@pytest.mark.parametrize(
    "argv",
    [
        ["-m", "experiment=roar", "analyzer=gradient,vargrad", "roar.fraction=0,50"],  # its own
        ["-m", "experiment=roar", "roar.fraction=30"],  # one fraction for every job
        ["-m", "analyzer=gradient,vargrad"],  # not a roar sweep
        ["experiment=roar", "analyzer=gradient"],  # a single run: the run as usual
        ["-m", "experiment=roar", "roar.sweep=false", "seed=0,1"],
    ],
)
def test_a_sweep_that_sets_its_fraction_or_is_no_roar_sweep_is_left_alone(argv):
    from src.config.cli import with_roar_fractions

    assert with_roar_fractions(argv) == (argv, [])


@pytest.mark.parametrize(
    "override, message",
    [
        ("roar.fraction=100", "roar.fraction must be a percentage of pixels in [0, 100), got 100"),
        ("roar.fraction=-5", "roar.fraction must be a percentage of pixels in [0, 100), got -5"),
        (
            "roar.fraction=half",
            "roar.fraction must be a percentage of pixels in [0, 100), got 'half'",
        ),
        (
            "roar.fractions=[0,50]",
            "roar.fractions must be a list of percentages in (0, 100), got [0, 50]",
        ),
        ("roar.fractions=50", "roar.fractions must be a list of percentages in (0, 100), got 50"),
    ],
)
def test_bad_roar_settings_fail_in_one_line(compose_config, override, message):
    from src.config.checks import validate

    with pytest.raises(UserError) as error:
        validate(compose_config(override))
    assert str(error.value) == message


def test_remove_and_retrain_refuses_a_model_trained_elsewhere(compose_config):
    from src.config.checks import validate

    validate(compose_config("model=keras_file", "model.path=/tmp/net.keras"))  # at 0: as usual
    with pytest.raises(UserError, match=r"^roar.fraction=30: remove-and-retrain trains a fresh "):
        validate(
            compose_config("model=keras_file", "model.path=/tmp/net.keras", "roar.fraction=30")
        )
