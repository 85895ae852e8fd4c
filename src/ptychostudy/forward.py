"""Each arm's own forward model as a prediction of the expected counts of a split's patterns from an object.

Our arms (the networks' physics head, their refinement and the gradient solver) predict through physics.py
(bilinear patches on the study's grid); pty-chi's arms through pty-chi's own forward path (object cut at the
rounded position, probe Fourier-shifted by the remainder). Used where a prediction is compared with data:
the model mismatch against the simulator (mismatch.py) and the held-out likelihood of the tune stage (tune.py).
"""

from __future__ import annotations

import numpy as np
import torch

from ptychostudy import physics
from ptychostudy.dataset import Split

FORWARD_MODELS = {  # arm -> the forward model it reconstructs with
    "pinn": "physics", "pinn_refined": "physics", "pinn_gs1": "physics", "gradient": "physics", "gradient_heldout": "physics",
    "pinn_gradient": "physics", "ptychi": "ptychi", "ptychi_tuned": "ptychi", "ptychi_heldout": "ptychi",
    "pinn_ptychi": "ptychi",
}


def physics_prediction(split: Split, obj: np.ndarray, chunk: int = 256) -> np.ndarray:
    """(n, N, N) float64 expected counts of ``split``'s patterns through physics.py."""
    obj = torch.from_numpy(np.asarray(obj, dtype=np.complex128))
    probe = split.probe.to(torch.complex128)
    n = probe.shape[-1]
    out = []
    for start in range(0, split.patterns, chunk):
        pos = torch.from_numpy(split.positions[start : start + chunk])
        patches = physics.extract_patches(obj, physics.top_left(pos[:, 0], n), physics.top_left(pos[:, 1], n), n)
        out.append(physics.expected_intensity(probe, patches, split.intensity_scale).numpy())
    return np.concatenate(out)


def ptychi_prediction(split: Split, obj: np.ndarray) -> np.ndarray:
    """(n, N, N) float64 expected counts through pty-chi's own forward path (the one its LSQML fits)."""
    from ptychostudy.ptychi_solver import predicted_counts  # pty-chi loads only here

    return predicted_counts(split, obj)


PREDICTORS = {"physics": physics_prediction, "ptychi": ptychi_prediction}
