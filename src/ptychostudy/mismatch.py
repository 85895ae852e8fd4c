"""How well each arm's own forward model predicts the simulator's noise-free intensities from the scored
truth (the simulate stage reports it: key ``model_mismatch``).

Our arms (the networks' physics head, their refinement and the gradient solver) predict through
physics.py (bilinear patches on the study's grid); pty-chi's arms through pty-chi's own forward path
(object cut at the rounded position, probe Fourier-shifted by the remainder). The simulator (simulator.py)
is finer than both, so neither is exact; the error sets a floor below which no arm can fit the data.
"""

from __future__ import annotations

import numpy as np
import torch

from ptychostudy import physics
from ptychostudy.dataset import Split

FORWARD_MODELS = {  # arm -> the forward model it reconstructs with
    "pinn": "physics", "pinn_refined": "physics", "gradient": "physics",
    "ptychi": "ptychi", "ptychi_tuned": "ptychi",
}


def physics_prediction(split: Split, truth: np.ndarray, chunk: int = 256) -> np.ndarray:
    """(n, N, N) float64 expected counts of ``split``'s patterns through physics.py."""
    obj = torch.from_numpy(np.asarray(truth, dtype=np.complex128))
    probe = split.probe.to(torch.complex128)
    n = probe.shape[-1]
    out = []
    for start in range(0, split.patterns, chunk):
        pos = torch.from_numpy(split.positions[start : start + chunk])
        patches = physics.extract_patches(obj, physics.top_left(pos[:, 0], n), physics.top_left(pos[:, 1], n), n)
        out.append(physics.expected_intensity(probe, patches, split.intensity_scale).numpy())
    return np.concatenate(out)


def ptychi_prediction(split: Split, truth: np.ndarray) -> np.ndarray:
    from ptychostudy.ptychi_solver import predicted_counts  # pty-chi loads only here

    return predicted_counts(split, truth)


PREDICTORS = {"physics": physics_prediction, "ptychi": ptychi_prediction}


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
