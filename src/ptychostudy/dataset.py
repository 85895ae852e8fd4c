"""The NPZ data contract (PtychoPINN / ptychodus keys): write, read, validate.

Per-scan keys (first axis n): ``diffraction`` (n, N, N) float32 amplitude = sqrt(counts),
``xcoords``/``ycoords``/``xcoords_start``/``ycoords_start`` (n,) float64 patch centres in
object pixels, ``scan_index`` (n,) int64. Global keys: ``probeGuess`` (N, N) complex64
(unit power), ``objectGuess`` (H, W) complex64 (the ground truth), ``_metadata`` a JSON
document stored as a 0-d unicode array (loads with ``allow_pickle=False``). A view file
adds ``groups`` (n_groups, C) int64 indices into the per-scan arrays.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Mapping

import numpy as np

from ptychostudy import StudyError
from ptychostudy.io import json_array, write_npz

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
    """Load and validate an NPZ file; never unpickles."""
    path = Path(path)
    if not path.is_file():
        raise DataContractError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {}
            for key in npz.files:
                try:
                    arrays[key] = npz[key]
                except ValueError as exc:
                    raise DataContractError(
                        f"{path}: key {key!r} holds a pickled object ({exc}); "
                        "the contract allows plain arrays only"
                    ) from None
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise DataContractError(f"{path}: not a readable .npz file ({exc})") from None
    except ValueError as exc:
        raise DataContractError(f"{path}: not a readable .npz file ({exc})") from None
    validate_arrays(arrays, str(path), require_groups=require_groups)
    return arrays


def metadata(arrays: Mapping[str, np.ndarray]) -> dict:
    return json.loads(str(arrays["_metadata"].item()))


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
    meta = arrays["_metadata"]
    if meta.dtype.kind != "U" or meta.ndim != 0:
        raise DataContractError(f"{where}: _metadata must be a JSON string (0-d unicode array), got {meta.dtype} {meta.shape}")
    try:
        parsed = json.loads(str(meta.item()))
    except json.JSONDecodeError as exc:
        raise DataContractError(f"{where}: _metadata is not valid JSON ({exc})") from None
    if not isinstance(parsed, dict):
        raise DataContractError(f"{where}: _metadata must be a JSON object")
    if "groups" in arrays:
        groups = arrays["groups"]
        if groups.dtype != np.int64 or groups.ndim != 2 or groups.shape[0] == 0:
            raise DataContractError(
                f"{where}: groups must be a non-empty (n_groups, C) int64 array, got {groups.dtype} {groups.shape}"
            )
        if groups.min() < 0 or groups.max() >= n:
            raise DataContractError(f"{where}: groups index positions outside 0…{n - 1}")
