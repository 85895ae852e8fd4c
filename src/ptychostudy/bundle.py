"""The model bundle ``wts.h5.zip``: byte-deterministic writing and safe reading.

A bundle is a zip (``io.write_zip``: fixed dates, sorted entries, no compression) of
exactly two members:

* ``weights.h5`` — one HDF5 dataset per weight tensor, created in sorted name order
  with ``track_times=False`` (written to memory, so the bytes do not depend on a path);
* ``description.json`` — what the weights are: format and version, and a manifest of
  every weight's shape and dtype, plus whatever the model needs to rebuild itself
  (architecture, N, gridsize, probe, scale factors, params, data sha256).

Reading never extracts anything to disk and never unpickles: members are read into
memory, their names checked first (path traversal, unexpected members), then the JSON
and the HDF5 are parsed and cross-checked. Any problem is a ``BundleError`` naming it.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path, PurePosixPath
from typing import Mapping

import h5py
import numpy as np

from ptychostudy import StudyError
from ptychostudy.io import json_text, write_zip

FORMAT = "ptychostudy-bundle"
FORMAT_VERSION = 1
WEIGHTS = "weights.h5"
DESCRIPTION = "description.json"
MEMBERS = (DESCRIPTION, WEIGHTS)
MAX_MEMBER_BYTES = 4 << 30
ALLOWED_KINDS = "fiu"  # float, signed and unsigned integer weights only


class BundleError(StudyError):
    """A bundle is malformed, unsafe or inconsistent."""


def weights_h5_bytes(weights: Mapping[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as h5:
        for name in sorted(weights):
            array = np.asarray(weights[name])  # (np.ascontiguousarray would turn 0-d into 1-d)
            if array.dtype.kind not in ALLOWED_KINDS:
                raise TypeError(f"weight {name!r} has dtype {array.dtype}; only numeric weights are stored")
            h5.create_dataset(name, data=array, track_times=False)
    return buffer.getvalue()


def write_bundle(path: str | Path, weights: Mapping[str, np.ndarray], description: Mapping, *, allow_empty: bool = False) -> None:
    """Write ``weights`` (name -> array) and ``description`` atomically and deterministically."""
    if not weights and not allow_empty:
        raise ValueError("a bundle needs at least one weight")
    manifest = {name: {"shape": list(np.shape(a)), "dtype": np.asarray(a).dtype.str} for name, a in weights.items()}
    full = {**description, "format": FORMAT, "format_version": FORMAT_VERSION, "weights": manifest}
    write_zip(path, {DESCRIPTION: json_text(full).encode("utf-8"), WEIGHTS: weights_h5_bytes(weights)})


def _member_name_problem(name: str) -> str | None:
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "an absolute path"
    if "\\" in name or ".." in PurePosixPath(name).parts:
        return "a path that leaves the bundle (path traversal)"
    if name not in MEMBERS:
        return "an unexpected member"
    return None


def _read_members(path: Path) -> dict[str, bytes]:
    if not path.is_file():
        raise BundleError(f"{path}: no such bundle")
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            for info in infos:
                problem = _member_name_problem(info.filename)
                if problem:
                    raise BundleError(f"{path}: member {info.filename!r} is {problem}; a bundle holds only {', '.join(MEMBERS)}")
                if info.file_size > MAX_MEMBER_BYTES:
                    raise BundleError(f"{path}: member {info.filename!r} is {info.file_size} bytes, over the {MAX_MEMBER_BYTES}-byte limit")
            names = [info.filename for info in infos]
            if len(set(names)) != len(names):
                raise BundleError(f"{path}: a member name appears twice")
            missing = [m for m in MEMBERS if m not in names]
            if missing:
                raise BundleError(f"{path}: missing member {missing[0]!r}")
            return {name: zf.read(name) for name in MEMBERS}
    except BundleError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as exc:
        raise BundleError(f"{path}: not a readable zip (truncated or corrupt: {exc})") from None


def read_bundle(path: str | Path, *, allow_empty: bool = False) -> tuple[dict[str, np.ndarray], dict]:
    """(weights, description) of a bundle, after every safety and consistency check.

    ``allow_empty`` accepts a bundle without weights (the record of a skipped job)."""
    path = Path(path)
    members = _read_members(path)
    try:
        description = json.loads(members[DESCRIPTION].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path}: {DESCRIPTION} is not valid JSON ({exc})") from None
    if not isinstance(description, dict):
        raise BundleError(f"{path}: {DESCRIPTION} must be a JSON object")
    if description.get("format") != FORMAT:
        raise BundleError(f"{path}: {DESCRIPTION} field 'format' must be {FORMAT!r}, got {description.get('format')!r}")
    if description.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"{path}: unsupported format_version {description.get('format_version')!r} (this reader knows {FORMAT_VERSION})")
    manifest = description.get("weights")
    if not isinstance(manifest, dict) or (not manifest and not allow_empty):
        raise BundleError(f"{path}: {DESCRIPTION} field 'weights' must be a non-empty object of name -> shape, dtype")
    weights = _read_weights(path, members[WEIGHTS])
    if set(weights) != set(manifest):
        extra = sorted(set(weights) ^ set(manifest))
        raise BundleError(f"{path}: weights.h5 and the description disagree on weight {extra[0]!r}")
    for name, spec in manifest.items():
        if not isinstance(spec, dict) or not isinstance(spec.get("shape"), list) or not isinstance(spec.get("dtype"), str):
            raise BundleError(f"{path}: description of weight {name!r} must give a shape list and a dtype string")
        if list(weights[name].shape) != spec["shape"] or weights[name].dtype.str != spec["dtype"]:
            raise BundleError(
                f"{path}: weight {name!r} is {weights[name].dtype.str} {list(weights[name].shape)}, "
                f"the description says {spec['dtype']} {spec['shape']}"
            )
    return weights, description


def _read_weights(path: Path, data: bytes) -> dict[str, np.ndarray]:
    weights: dict[str, np.ndarray] = {}
    try:
        with h5py.File(io.BytesIO(data), "r") as h5:
            for name, item in h5.items():
                if not isinstance(item, h5py.Dataset):
                    raise BundleError(f"{path}: weights.h5 holds a group {name!r}; only datasets are allowed")
                if item.dtype.kind not in ALLOWED_KINDS:
                    raise BundleError(f"{path}: weight {name!r} has dtype {item.dtype}; only numeric weights are allowed")
                weights[name] = item[()]
    except BundleError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"{path}: weights.h5 is not a readable HDF5 file ({exc})") from None
    for name, array in weights.items():
        if not np.all(np.isfinite(array)):
            raise BundleError(f"{path}: weight {name!r} contains NaN or Inf")
    return weights
