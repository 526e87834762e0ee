"""The libraries the scores use where they fit, imported only when a score runs (Quantus imports
TensorFlow: graph mode and quiet logs first).
"""

from __future__ import annotations

import warnings

from src.common.tf_runtime import tensorflow


def _quantus():
    tensorflow()  # Quantus imports TensorFlow: graph mode and quiet logs first
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import quantus
    return quantus
