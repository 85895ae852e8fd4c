"""wts.h5.zip: byte-deterministic across processes, and refused when malformed or unsafe."""

from __future__ import annotations

import io
import pickle
import subprocess
import sys
import zipfile

import h5py
import numpy as np
import pytest

from ptychostudy.bundle import BundleError, read_bundle, weights_h5_bytes, write_bundle
from ptychostudy.io import json_text, sha256_file
from ptychostudy.npz import zip_bytes

WEIGHTS = {
    "encoder.0.weight": np.arange(2 * 3 * 3 * 3, dtype=np.float32).reshape(2, 3, 3, 3) / 7,
    "encoder.0.bias": np.array([0.5, -0.25], dtype=np.float32),
    "decoder.steps": np.array(3, dtype=np.int64),
}
DESCRIPTION = {"architecture": {"filters": [2]}, "patch_size": 64, "gridsize": 2}

WRITE = """
import sys, numpy as np
sys.path.insert(0, {tests!r})
from test_bundle import WEIGHTS, DESCRIPTION
from ptychostudy.bundle import write_bundle
write_bundle(sys.argv[1], WEIGHTS, DESCRIPTION)
"""


def test_round_trip(tmp_path):
    path = tmp_path / "wts.h5.zip"
    write_bundle(path, WEIGHTS, DESCRIPTION)
    weights, description = read_bundle(path)
    assert set(weights) == set(WEIGHTS)
    for name, array in WEIGHTS.items():
        assert np.array_equal(weights[name], array) and weights[name].dtype == array.dtype
    assert description["patch_size"] == 64 and description["format"] == "ptychostudy-bundle"
    assert description["weights"]["encoder.0.weight"]["shape"] == [2, 3, 3, 3]


def test_byte_identical_across_processes(tmp_path):
    import pathlib

    tests = str(pathlib.Path(__file__).parent)
    for name in ("a.zip", "b.zip"):
        subprocess.run([sys.executable, "-c", WRITE.format(tests=tests), str(tmp_path / name)], check=True)
    write_bundle(tmp_path / "c.zip", dict(reversed(list(WEIGHTS.items()))), DESCRIPTION)  # insertion order is irrelevant
    digests = {sha256_file(tmp_path / n) for n in ("a.zip", "b.zip", "c.zip")}
    assert len(digests) == 1


def _valid_members():
    description = {**DESCRIPTION, "format": "ptychostudy-bundle", "format_version": 1,
                   "weights": {n: {"shape": list(a.shape), "dtype": a.dtype.str} for n, a in WEIGHTS.items()}}
    return {"description.json": json_text(description).encode(), "weights.h5": weights_h5_bytes(WEIGHTS)}


def _h5(**arrays):
    return weights_h5_bytes(arrays)


def _description(**changes):
    d = {**DESCRIPTION, "format": "ptychostudy-bundle", "format_version": 1,
         "weights": {n: {"shape": list(a.shape), "dtype": a.dtype.str} for n, a in WEIGHTS.items()}}
    d.update(changes)
    return json_text(d).encode()


def _raw_zip(entries: dict) -> bytes:
    """A zip that may hold names our writer would never produce."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buffer.getvalue()


CASES = {
    "path traversal": (lambda: _raw_zip({**_valid_members(), "../evil.py": b"print(1)"}), "path traversal"),
    "absolute path": (lambda: _raw_zip({**_valid_members(), "/etc/evil": b"x"}), "an absolute path"),
    "unexpected member": (lambda: _raw_zip({**_valid_members(), "extra.txt": b"x"}), "an unexpected member"),
    "pickle payload": (lambda: _raw_zip({**_valid_members(), "model.pkl": pickle.dumps({"a": 1})}), "an unexpected member"),
    "missing weights": (lambda: zip_bytes({"description.json": _valid_members()["description.json"]}), "missing member 'weights.h5'"),
    "truncated zip": (lambda: zip_bytes(_valid_members())[:300], "not a readable zip"),
    "not a zip": (lambda: b"PK\x03\x04 garbage", "not a readable zip"),
    "corrupt hdf5": (lambda: zip_bytes({**_valid_members(), "weights.h5": b"\x89HDF\r\n\x1a\n" + b"\0" * 64}), "not a readable HDF5"),
    "wrong shape": (lambda: zip_bytes({**_valid_members(), "weights.h5": _h5(**{**WEIGHTS, "encoder.0.bias": np.zeros(3, np.float32)})}),
                    "weight 'encoder.0.bias' is <f4 [3], the description says <f4 [2]"),
    "missing weight": (lambda: zip_bytes({**_valid_members(), "weights.h5": _h5(**{k: v for k, v in WEIGHTS.items() if k != "decoder.steps"})}),
                       "disagree on weight 'decoder.steps'"),
    "NaN weight": (lambda: zip_bytes({**_valid_members(), "weights.h5": _h5(**{**WEIGHTS, "encoder.0.bias": np.array([np.nan, 0], np.float32)})}),
                   "contains NaN or Inf"),
    "description not JSON": (lambda: zip_bytes({**_valid_members(), "description.json": b"{nope"}), "is not valid JSON"),
    "description wrong format": (lambda: zip_bytes({**_valid_members(), "description.json": _description(format="keras")}), "field 'format' must be"),
    "description wrong version": (lambda: zip_bytes({**_valid_members(), "description.json": _description(format_version="1")}), "unsupported format_version"),
    "description weights wrong type": (lambda: zip_bytes({**_valid_members(), "description.json": _description(weights=[1, 2])}), "field 'weights' must be"),
    "description weight spec wrong type": (
        lambda: zip_bytes({**_valid_members(), "description.json": _description(weights={**{n: {"shape": list(a.shape), "dtype": a.dtype.str} for n, a in WEIGHTS.items()}, "decoder.steps": {"shape": "()", "dtype": "<i8"}})}),
        "must give a shape list"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_bundles_are_refused(tmp_path, case, monkeypatch):
    build, message = CASES[case]
    path = tmp_path / "wts.h5.zip"
    path.write_bytes(build())
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(BundleError) as info:
        read_bundle(path)
    assert message in str(info.value)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing extracted
    assert not (tmp_path.parent / "evil.py").exists()


def test_object_dtype_in_hdf5_is_refused(tmp_path):
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as h5:
        h5.create_dataset("w", data=np.array([b"abc"], dtype=h5py.string_dtype()))
    description = json_text({"format": "ptychostudy-bundle", "format_version": 1, "weights": {"w": {"shape": [1], "dtype": "|O"}}}).encode()
    path = tmp_path / "wts.h5.zip"
    path.write_bytes(zip_bytes({"description.json": description, "weights.h5": buffer.getvalue()}))
    with pytest.raises(BundleError, match="only numeric weights"):
        read_bundle(path)
