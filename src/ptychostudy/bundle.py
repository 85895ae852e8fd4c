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

``save_model`` and ``load_bundle`` put a trained ``model.Reconstructor`` into a bundle and
rebuild it from one: the network is rebuilt from this package's own code, never from the file.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import typing
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Mapping

import h5py
import numpy as np
import torch

from ptychostudy import StudyError
from ptychostudy.architecture import Architecture
from ptychostudy.io import json_text
from ptychostudy.model import Reconstructor
from ptychostudy.npz import write_zip

FORMAT = "ptychostudy-bundle"
FORMAT_VERSION = 1
WEIGHTS = "weights.h5"
DESCRIPTION = "description.json"
MEMBERS = (DESCRIPTION, WEIGHTS)
MAX_MEMBER_BYTES = 1 << 30  # a member of a bundle (the study's weights: a few MB)
MAX_RATIO = 100  # a compressed member may inflate at most this many times its stored size (weights: ~1.1×)
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
    if path.is_dir():
        raise BundleError(f"{path}: a folder, not a bundle (wts.h5.zip)")
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
                if info.compress_type != zipfile.ZIP_STORED and info.file_size > MAX_RATIO * max(info.compress_size, 1):
                    raise BundleError(f"{path}: member {info.filename!r} would inflate {info.file_size // max(info.compress_size, 1)} "
                                      "times its stored size (a decompression bomb?); refused before reading")
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


# ---------------------------------------------------------------------------------------
# The trained network as a bundle: what Phase E writes and Phase G loads

MODEL_KIND = "ptychostudy-pinn"
PROBE_WEIGHT = "physics.probe"  # the known probe, (N, N, 2) float32 real/imaginary parts


def model_weights(model: Reconstructor, probe: torch.Tensor) -> dict[str, np.ndarray]:
    """Every learned tensor, plus the probe, as float32 arrays named by their state-dict keys."""
    weights = {name: t.detach().cpu().numpy().astype(np.float32) for name, t in model.state_dict().items()}
    weights[PROBE_WEIGHT] = torch.view_as_real(probe.detach().cpu().to(torch.complex64)).numpy()
    return weights


def save_model(path, model: Reconstructor, probe: torch.Tensor, intensity_scale: float, extra: dict) -> None:
    """Write ``model`` as a bundle; ``extra`` (params, data sha256, …) joins the description."""
    description = {
        **extra,
        "kind": MODEL_KIND,
        "architecture": dataclasses.asdict(model.arch),
        "intensity_scale": float(intensity_scale),
        "input_scale": float(model.input_scale),
    }
    write_bundle(path, model_weights(model, probe), description)


def write_skip_bundle(path, record: dict) -> None:
    """A job whose view was skipped in Phase D still leaves its declared output: a bundle
    that holds no weights and says why (``load_bundle`` refuses it with that reason)."""
    write_bundle(path, {}, {**record, "kind": MODEL_KIND, "skipped": True}, allow_empty=True)


@dataclass
class LoadedModel:
    model: Reconstructor
    probe: torch.Tensor
    intensity_scale: float
    description: dict


def _field(path, description: dict, key: str, kind):
    value = description.get(key)
    ok = isinstance(value, kind) and not isinstance(value, bool) if kind is not bool else isinstance(value, bool)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if not ok:
        raise BundleError(f"{path}: description field {key!r} must be {kind.__name__}, got {value!r}")
    if kind is float and not math.isfinite(value):
        raise BundleError(f"{path}: description field {key!r} must be finite, got {value!r}")
    return value


def load_bundle(path) -> LoadedModel:
    """Rebuild the trained model from ``wts.h5.zip``; refuses malformed bundles with ``BundleError``.

    Nothing is executed from the bundle: the description is JSON, the weights are HDF5
    datasets of numbers, and the architecture is rebuilt from this package's own code.
    """
    weights, description = read_bundle(path, allow_empty=True)
    if description.get("skipped") is True:
        raise BundleError(f"{path}: this job was skipped ({description.get('reason') or 'no reason given'}); it holds no model")
    if not weights:
        raise BundleError(f"{path}: description field 'weights' must be a non-empty object of name -> shape, dtype")
    if description.get("kind") != MODEL_KIND:
        raise BundleError(f"{path}: description field 'kind' must be {MODEL_KIND!r}, got {description.get('kind')!r}")
    raw = description.get("architecture")
    if not isinstance(raw, dict):
        raise BundleError(f"{path}: description field 'architecture' must be an object")
    fields = {f.name: f for f in dataclasses.fields(Architecture)}
    if set(raw) != set(fields):
        odd = sorted(set(raw) ^ set(fields))
        raise BundleError(f"{path}: architecture field {odd[0]!r} is missing or unexpected")
    types = typing.get_type_hints(Architecture)
    arch_values = {key: _field(path, raw, key, types[key]) for key in fields}
    arch = Architecture(**arch_values)
    try:
        arch.check()
    except ValueError as exc:
        raise BundleError(f"{path}: {exc}") from None
    intensity_scale = _field(path, description, "intensity_scale", float)
    input_scale = _field(path, description, "input_scale", float)
    if intensity_scale <= 0 or input_scale <= 0:
        raise BundleError(f"{path}: intensity_scale and input_scale must be positive")
    probe_array = weights.pop(PROBE_WEIGHT, None)
    if probe_array is None or probe_array.shape != (arch.size, arch.size, 2):
        got = None if probe_array is None else probe_array.shape
        raise BundleError(f"{path}: weight {PROBE_WEIGHT!r} must be ({arch.size}, {arch.size}, 2), got {got}")
    probe = torch.view_as_complex(torch.from_numpy(np.ascontiguousarray(probe_array, dtype=np.float32)))
    model = Reconstructor(arch, probe, intensity_scale, input_scale)
    expected = model.state_dict()
    if set(expected) != set(weights):
        odd = sorted(set(expected) ^ set(weights))
        raise BundleError(f"{path}: weight {odd[0]!r} does not belong to a {arch.inputs} network of this architecture")
    for name, tensor in expected.items():
        if tuple(tensor.shape) != weights[name].shape:
            raise BundleError(
                f"{path}: weight {name!r} has shape {list(weights[name].shape)}, the architecture needs {list(tensor.shape)}"
            )
    model.load_state_dict({name: torch.from_numpy(np.asarray(w, dtype=np.float32)) for name, w in weights.items()})
    model.eval()
    return LoadedModel(model, probe, intensity_scale, description)
