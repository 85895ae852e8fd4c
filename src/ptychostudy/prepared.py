"""The prepared base (the base stage's one file): the zoomed object, the unit-power probe and their facts, written
and read byte-deterministically (no pickle). The base stage writes it; Phase C (simulate.py) reads it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ptychostudy import StudyError
from ptychostudy.npz import json_array, read_metadata, read_npz, write_npz


class BaseDataError(StudyError):
    """A base data file is missing, changed or malformed."""


@dataclass(frozen=True)
class Base:
    obj: np.ndarray  # (H, W) complex64, the ground truth
    probe: np.ndarray  # (N, N) complex64, unit power
    featured: tuple[int, int, int, int]  # row0, row1, col0, col1 (inclusive) of the object's structure
    metadata: dict


def write_base(base: Base, path: Path) -> None:
    write_npz(path, {"object": base.obj, "probe": base.probe, "_metadata": json_array(base.metadata)})


def read_base(path: Path) -> Base:
    path = Path(path)
    arrays = read_npz(path, "prepared base", BaseDataError, "run `dvc repro base` first")
    meta = read_metadata(arrays, str(path), BaseDataError)
    try:
        obj, probe = arrays["object"], arrays["probe"]
        region = meta["featured_region"]
        featured = (region["row0"], region["row1"], region["col0"], region["col1"])
    except (KeyError, TypeError) as exc:
        raise BaseDataError(f"prepared base {path} is malformed (missing {exc})") from None
    return Base(obj=obj, probe=probe, featured=featured, metadata=meta)
