"""The NPZ data contract (PtychoPINN / ptychodus keys): write, read, validate.

Per-scan keys (first axis n): ``diffraction`` (n, N, N) float32 amplitude = sqrt(counts),
``xcoords``/``ycoords``/``xcoords_start``/``ycoords_start`` (n,) float64 patch centres in
object pixels, ``scan_index`` (n,) int64. Global keys: ``probeGuess`` (N, N) complex64
(unit power), ``objectGuess`` (H, W) complex64 (the ground truth), ``_metadata`` a JSON
document stored as a 0-d unicode array (loads with ``allow_pickle=False``). A view file
adds ``groups`` (n_groups, C) int64 indices into the per-scan arrays.

``Split`` is one split of a view as tensors: what training (Phase E), pty-chi (Phase F) and
the comparison (Phase G) read.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping

import numpy as np
import torch

from ptychostudy import StudyError
from ptychostudy.npz import json_array, read_metadata, read_npz, write_npz

CONTRACT_VERSION = 1
PER_SCAN = {
    "diffraction": (np.float32, 3),
    "xcoords": (np.float64, 1),
    "ycoords": (np.float64, 1),
    "xcoords_start": (np.float64, 1),
    "ycoords_start": (np.float64, 1),
    "scan_index": (np.int64, 1),
}
GLOBAL = {
    "probeGuess": (np.complex64, 2),
    "objectGuess": (np.complex64, 2),
}
REQUIRED = tuple(PER_SCAN) + tuple(GLOBAL) + ("_metadata",)
OPTIONAL = ("groups",)
DIFFRACTION_SEMANTICS = {
    "diffraction_quantity": "amplitude = sqrt(photon counts)",
    "diffraction_layout": "(n, N, N), zero frequency at the array centre",
    "coordinates": "xcoords = column, ycoords = row of the patch centre, object pixels",
    "contract_version": CONTRACT_VERSION,
}


class DataContractError(StudyError):
    """An NPZ file breaks the data contract."""


def build_arrays(
    *,
    diffraction: np.ndarray,
    xcoords: np.ndarray,
    ycoords: np.ndarray,
    scan_index: np.ndarray,
    probe: np.ndarray,
    obj: np.ndarray,
    metadata: Mapping,
    groups: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """The contract's arrays with the contract's dtypes."""
    arrays = {
        "diffraction": np.asarray(diffraction, dtype=np.float32),
        "xcoords": np.asarray(xcoords, dtype=np.float64),
        "ycoords": np.asarray(ycoords, dtype=np.float64),
        "xcoords_start": np.asarray(xcoords, dtype=np.float64),
        "ycoords_start": np.asarray(ycoords, dtype=np.float64),
        "scan_index": np.asarray(scan_index, dtype=np.int64),
        "probeGuess": np.asarray(probe, dtype=np.complex64),
        "objectGuess": np.asarray(obj, dtype=np.complex64),
        "_metadata": json_array({**DIFFRACTION_SEMANTICS, **metadata}),
    }
    if groups is not None:
        arrays["groups"] = np.asarray(groups, dtype=np.int64)
    return arrays


def write_dataset(path: str | Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Validate ``arrays`` against the contract, then write them atomically."""
    validate_arrays(arrays, str(path))
    write_npz(path, arrays)


def read_dataset(path: str | Path, *, require_groups: bool = False) -> dict[str, np.ndarray]:
    """Load and validate an NPZ file of the contract; never unpickles."""
    arrays = read_npz(path, "data", DataContractError)
    validate_arrays(arrays, str(path), require_groups=require_groups)
    return arrays


def metadata(arrays: Mapping[str, np.ndarray], where: str = "data file") -> dict:
    return read_metadata(arrays, where, DataContractError)


def validate_arrays(arrays: Mapping[str, np.ndarray], where: str, *, require_groups: bool = False) -> None:
    """Raise ``DataContractError`` naming the first problem found."""
    missing = [k for k in REQUIRED if k not in arrays]
    if require_groups and "groups" not in arrays:
        missing.append("groups")
    if missing:
        raise DataContractError(f"{where}: missing key {missing[0]!r} (required: {', '.join(REQUIRED)})")
    unexpected = sorted(set(arrays) - set(REQUIRED) - set(OPTIONAL))
    if unexpected:
        raise DataContractError(f"{where}: unexpected key {unexpected[0]!r}")
    for key, (dtype, ndim) in {**PER_SCAN, **GLOBAL}.items():
        array = arrays[key]
        if array.dtype != dtype:
            raise DataContractError(f"{where}: {key} has dtype {array.dtype}, the contract requires {np.dtype(dtype)}")
        if array.ndim != ndim:
            raise DataContractError(f"{where}: {key} has {array.ndim} dimensions {array.shape}, expected {ndim}")
    n = arrays["diffraction"].shape[0]
    if n == 0:
        raise DataContractError(f"{where}: the split is empty (0 diffraction patterns)")
    for key in PER_SCAN:
        if arrays[key].shape[0] != n:
            raise DataContractError(
                f"{where}: {key} has {arrays[key].shape[0]} entries but diffraction has {n} patterns"
            )
    probe = arrays["probeGuess"]
    size = probe.shape[0]
    if probe.shape != (size, size):
        raise DataContractError(f"{where}: probeGuess must be square, got {probe.shape}")
    if arrays["diffraction"].shape[1:] != (size, size):
        raise DataContractError(
            f"{where}: diffraction patterns are {arrays['diffraction'].shape[1:]} but the probe is {probe.shape}"
        )
    for key in ("diffraction", "xcoords", "ycoords", "probeGuess", "objectGuess"):
        if not np.all(np.isfinite(arrays[key])):
            raise DataContractError(f"{where}: {key} contains NaN or Inf")
    if np.any(arrays["diffraction"] < 0):
        raise DataContractError(f"{where}: diffraction holds negative amplitudes")
    if not np.any(arrays["diffraction"]):
        raise DataContractError(f"{where}: every diffraction pattern is zero (no photon was counted)")
    height, width = arrays["objectGuess"].shape
    if height < size or width < size:
        raise DataContractError(f"{where}: objectGuess is {height}×{width}, smaller than one {size}×{size} patch")
    for key, extent in (("ycoords", height), ("xcoords", width)):
        outside = (arrays[key] < 0) | (arrays[key] > extent - 1)
        if outside.any():
            raise DataContractError(f"{where}: {int(outside.sum())} positions lie outside the object ({key} "
                                    f"{arrays[key][outside][0]:g}; the object spans 0…{extent - 1} px)")
    meta = metadata(arrays, where)
    if meta.get("contract_version") != CONTRACT_VERSION:
        raise DataContractError(f"{where}: _metadata lacks contract_version {CONTRACT_VERSION} (a data file records the "
                                "contract it follows and how it was made)")
    if "groups" in arrays:
        groups = arrays["groups"]
        if groups.dtype != np.int64 or groups.ndim != 2 or groups.shape[0] == 0:
            raise DataContractError(
                f"{where}: groups must be a non-empty (n_groups, C) int64 array, got {groups.dtype} {groups.shape}"
            )
        if groups.min() < 0 or groups.max() >= n:
            raise DataContractError(f"{where}: groups index positions outside 0…{n - 1}")


@dataclass
class Split:
    """One split of a view, as tensors ready for training, reconstruction and scoring."""

    amplitude: torch.Tensor  # (n, N, N) measured sqrt(counts)
    positions: np.ndarray  # (n, 2) patch centres (y, x)
    groups: np.ndarray  # (G, C) indices into the patterns
    truth: np.ndarray  # (H, W) complex ground truth (scoring only, never trained on)
    probe: torch.Tensor  # (N, N) complex, unit power
    intensity_scale: float
    featured: tuple[int, int, int, int]  # row0, row1, col0, col1 (inclusive) of the object's structure

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], gridsize: int) -> "Split":
        meta = metadata(arrays)
        source = meta.get("source_metadata", meta)
        n = arrays["diffraction"].shape[0]
        groups = arrays["groups"] if gridsize > 1 else np.arange(n, dtype=np.int64)[:, None]
        region = source["featured_region"]
        return cls(
            amplitude=torch.from_numpy(np.array(arrays["diffraction"], dtype=np.float32)),
            positions=np.stack([arrays["ycoords"], arrays["xcoords"]], axis=1),
            groups=np.asarray(groups, dtype=np.int64),
            truth=np.asarray(arrays["objectGuess"]),
            probe=torch.from_numpy(np.array(arrays["probeGuess"])),
            intensity_scale=float(source["intensity_scale"]),
            featured=(region["row0"], region["row1"], region["col0"], region["col1"]),
        )

    @classmethod
    def read(cls, path: str | Path, gridsize: int, *, require_groups: bool | None = None) -> "Split":
        """Read and validate a view file; ``require_groups`` defaults to gridsize > 1."""
        arrays = read_dataset(path, require_groups=gridsize > 1 if require_groups is None else require_groups)
        return cls.from_arrays(arrays, gridsize)

    @property
    def patterns(self) -> int:
        return int(self.amplitude.shape[0])

    def positions_subset(self, index: np.ndarray) -> "Split":
        """The patterns ``index`` alone, each its own group (the iterative solvers read positions, not groups);
        truth, probe and scale unchanged."""
        index = np.asarray(index, dtype=np.int64)
        return replace(self, amplitude=self.amplitude[torch.from_numpy(index)], positions=self.positions[index],
                       groups=np.arange(len(index), dtype=np.int64)[:, None])

    def offsets(self, groups: np.ndarray) -> torch.Tensor:
        """(B, C, 2) member positions relative to their group's mean position."""
        pos = self.positions[groups]
        return torch.from_numpy((pos - pos.mean(axis=1, keepdims=True)).astype(np.float32))

    def eval_groups(self) -> tuple[np.ndarray, np.ndarray]:
        """One group per pattern (the first group holding it) and the pattern's member index."""
        n = self.patterns
        group_of = np.full(n, -1, dtype=np.int64)
        member_of = np.zeros(n, dtype=np.int64)
        for g, members in enumerate(self.groups):
            for m, k in enumerate(members):
                if group_of[k] < 0:
                    group_of[k] = g
                    member_of[k] = m
        keep = group_of >= 0
        return np.nonzero(keep)[0], np.stack([group_of[keep], member_of[keep]], axis=1)
