"""The stored arms' file (Phase F, and the refined network beside it): one object, its cost per epoch or
step, and the stage's record, in a byte-deterministic ``.npz`` read without unpickling; and a run's objects on the
way (its curve file)."""

from __future__ import annotations

import os
from typing import Mapping

import numpy as np

from ptychostudy import StudyError
from ptychostudy.npz import json_array, read_metadata, read_npz, write_npz

RECONSTRUCTION_KEYS = ("object", "cost", "_metadata")


def write_reconstruction(path: str | os.PathLike, obj: np.ndarray, cost: np.ndarray, record: Mapping) -> None:
    """A Phase F file (every iterative arm): object (H, W) complex64, cost per epoch or step, metadata."""
    write_npz(path, {"object": np.asarray(obj, dtype=np.complex64), "cost": np.asarray(cost, dtype=np.float64),
                     "_metadata": json_array(record)})


def read_reconstruction(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, dict]:
    """Load a Phase F file (no pickle): (object, cost, metadata)."""
    arrays = read_npz(path, "Phase F reconstruction", hint="run its reconstruct stage first")
    if sorted(arrays) != sorted(RECONSTRUCTION_KEYS):
        raise StudyError(f"{path}: expected the keys {', '.join(RECONSTRUCTION_KEYS)}, found {', '.join(sorted(arrays))}")
    return arrays["object"], arrays["cost"], read_metadata(arrays, str(path))


CURVE_KEYS = ("epochs", "objects", "_metadata")


def write_curve(path: str | os.PathLike, epochs, objects, record: Mapping) -> None:
    """A solver run's objects on the way (Phase F's ``ptychi_tuned``: the blank start's curve the warmstart
    stage scores): epochs (k,) int64, objects (k, H, W) complex64, metadata."""
    write_npz(path, {"epochs": np.asarray(epochs, dtype=np.int64),
                     "objects": np.asarray(objects, dtype=np.complex64).reshape(len(epochs), *np.shape(objects)[1:]),
                     "_metadata": json_array(record)})


def read_curve(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, dict]:
    """Load a curve file (no pickle): (epochs, objects, metadata)."""
    arrays = read_npz(path, "solver curve", hint="run its reconstruct_tuned stage first")
    if sorted(arrays) != sorted(CURVE_KEYS):
        raise StudyError(f"{path}: expected the keys {', '.join(CURVE_KEYS)}, found {', '.join(sorted(arrays))}")
    epochs, objects = arrays["epochs"], arrays["objects"]
    if epochs.ndim != 1 or objects.ndim != 3 or len(epochs) != len(objects):
        raise StudyError(f"{path}: {len(epochs)} epochs for {objects.shape[0] if objects.ndim == 3 else '?'} objects")
    return epochs, objects, read_metadata(arrays, str(path))
