"""The NPZ data contract: ours passes, broken files fail with a message naming the problem."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from ptychostudy.dataset import DataContractError, read_dataset
from ptychostudy.npz import write_npz


@pytest.fixture
def arrays(tiny_simulated):
    folder, _ = tiny_simulated
    with np.load(folder / "patched_train.npz", allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def test_our_files_pass(tiny_simulated):
    folder, _ = tiny_simulated
    arrays = read_dataset(folder / "patched_test.npz")
    assert arrays["diffraction"].dtype == np.float32 and arrays["diffraction"].ndim == 3
    assert arrays["_metadata"].dtype.kind == "U" and arrays["_metadata"].ndim == 0


BROKEN = [
    ("missing key", lambda a: a.pop("ycoords"), "missing key 'ycoords'"),
    ("wrong dtype", lambda a: a.__setitem__("diffraction", a["diffraction"].astype(np.float64)), "diffraction has dtype float64"),
    ("length mismatch", lambda a: a.__setitem__("xcoords", a["xcoords"][:-1]), "xcoords has 63 entries but diffraction has 64 patterns"),
    ("empty split", lambda a: [a.__setitem__(k, a[k][:0]) for k in ("diffraction", "xcoords", "ycoords", "xcoords_start", "ycoords_start", "scan_index")], "the split is empty"),
    ("NaN", lambda a: a["diffraction"].__setitem__((0, 0, 0), np.nan), "diffraction contains NaN or Inf"),
    ("negative", lambda a: a["diffraction"].__setitem__((0, 0, 0), -1.0), "negative amplitudes"),
    ("probe not square", lambda a: a.__setitem__("probeGuess", a["probeGuess"][:, :32]), "probeGuess must be square"),
    ("metadata not JSON", lambda a: a.__setitem__("_metadata", np.array("{not json")), "_metadata is not valid JSON"),
    ("unexpected key", lambda a: a.__setitem__("extra", np.zeros(3)), "unexpected key 'extra'"),
    ("bad groups", lambda a: a.__setitem__("groups", np.array([[0, 9999]], dtype=np.int64)), "groups index positions outside"),
]


@pytest.mark.parametrize("name,breaker,message", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_files_are_rejected(arrays, tmp_path, name, breaker, message):
    arrays = {k: v.copy() for k, v in arrays.items()}
    breaker(arrays)
    path = tmp_path / "broken.npz"
    write_npz(path, arrays)
    with pytest.raises(DataContractError) as info:
        read_dataset(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_pickled_metadata_is_refused_not_loaded(arrays, tmp_path):
    """The original stored _metadata as a pickled object array; we must never unpickle."""
    path = tmp_path / "pickled.npz"
    buffer = io.BytesIO()
    np.save(buffer, np.array({"evil": True}, dtype=object), allow_pickle=True)
    with zipfile.ZipFile(path, "w") as zf:
        for key, value in arrays.items():
            if key == "_metadata":
                zf.writestr("_metadata.npy", buffer.getvalue())
            else:
                b = io.BytesIO()
                np.save(b, value)
                zf.writestr(f"{key}.npy", b.getvalue())
    with pytest.raises(DataContractError, match="pickled object"):
        read_dataset(path)


def test_truncated_file_is_refused(tiny_simulated, tmp_path):
    folder, _ = tiny_simulated
    data = (folder / "patched_train.npz").read_bytes()
    path = tmp_path / "cut.npz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataContractError, match="not a readable .npz file"):
        read_dataset(path)


def test_check_data_cli(tiny_simulated, tmp_path):
    import subprocess
    import sys

    folder, _ = tiny_simulated
    ok = subprocess.run([sys.executable, "-m", "ptychostudy", "check-data", str(folder / "patched_train.npz")], capture_output=True, text=True)
    assert ok.returncode == 0 and "ok, 64 patterns" in ok.stdout
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    result = subprocess.run([sys.executable, "-m", "ptychostudy", "check-data", str(bad)], capture_output=True, text=True)
    assert result.returncode == 2 and "not a readable .npz file" in result.stderr
