"""The scores of explanation quality: the registry (:mod:`src.scores.registry`), one module
per family of scores, which registers its scores as it is imported, and the run of them
(:func:`evaluate`). Importing this package gives the full registry, ``SCORES``;
``python -m src.scores`` prints the table of them in docs/scores.md."""

# The families register their scores as they are imported, in this order: the order of
# ``SCORES``, which the verdict, the tables and docs/scores.md show. Keep it.
# isort: off
from src.scores import (  # noqa: F401
    faithfulness,
    road,
    randomisation,
    random_logit,
    properties,
    robustness,
    localisation,
)

# isort: on
from src.scores.evaluation import evaluate
from src.scores.registry import Evaluation, registered

# Every score, by name, in the order the verdict and docs/scores.md show them.
SCORES = registered()

__all__ = ["SCORES", "Evaluation", "evaluate"]
