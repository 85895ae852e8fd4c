"""How well each arm's own forward model predicts the simulator's noise-free intensities from the scored
truth (the simulate stage reports it: key ``model_mismatch``).

Each arm predicts through its own forward model (forward.py). The simulator (simulator.py)
is finer than both, so neither is exact; the error sets a floor below which no arm can fit the data.
"""

from __future__ import annotations

import numpy as np

from ptychostudy.forward import FORWARD_MODELS, PREDICTORS


def measure(pairs, truth: np.ndarray) -> dict:
    """Per forward model, over every pattern of the (split, noise-free intensities I) ``pairs``: the relative
    error ‖I_model − I‖ / ‖I‖, and the mean over detector pixels (I > 0) of (I_model − I)² / I: the error in
    units of the Poisson variance at this dose (1 = as large as the noise)."""
    result = {}
    for name, predict in PREDICTORS.items():
        squared = total = units = lit_pixels = 0.0
        for split, expected in pairs:
            expected = np.asarray(expected, dtype=np.float64)
            diff = predict(split, truth) - expected
            lit = expected > 0
            squared += float(np.sum(diff**2))
            total += float(np.sum(expected**2))
            units += float(np.sum(diff[lit] ** 2 / expected[lit]))
            lit_pixels += int(lit.sum())
        result[name] = {"relative_error": (squared / total) ** 0.5, "noise_units": units / lit_pixels}
    return result


def per_arm(models: dict) -> dict:
    """{arm: {"forward_model": name, relative_error, noise_units}} from ``measure``'s result."""
    return {arm: {"forward_model": model, **models[model]} for arm, model in FORWARD_MODELS.items()}
