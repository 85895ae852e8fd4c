"""File I/O: atomic, byte-deterministic writing, the one NPZ reader, and hashing.

Every output of the pipeline goes through this module:

* ``atomic_path`` yields a temporary path in the destination folder; the file only
  appears at its final name (``os.replace``) once it was written completely, so a
  killed stage never leaves a file that looks finished.
* ``write_zip`` writes a zip whose bytes depend only on its entries: fixed entry
  dates, sorted entry order, fixed attributes, no compression (DEFLATE output can
  differ between zlib builds).
* ``write_npz`` writes a NumPy ``.npz`` through ``write_zip`` (``np.savez`` embeds the
  current time in every entry), and never pickles.

Every ``.npz`` the study reads goes through ``read_npz`` (never unpickles; one set of
refusals for every file kind), and its ``_metadata`` JSON through ``read_metadata``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import zipfile
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np

from ptychostudy import StudyError

ZIP_DATE = (1980, 1, 1, 0, 0, 0)
ZIP_FILE_MODE = 0o100644 << 16  # regular file, rw-r--r--


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; move it onto ``path`` on success.

    On any exception the temporary file is removed and ``path`` is left untouched.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def json_text(obj) -> str:
    """Canonical JSON text: sorted keys, two-space indent, trailing newline."""
    return json.dumps(obj, sort_keys=True, indent=2, allow_nan=False) + "\n"


def write_json(path: str | os.PathLike, obj) -> None:
    write_bytes(path, json_text(obj).encode("utf-8"))


def read_json(path: str | os.PathLike, what: str, hint: str = "") -> dict:
    """A JSON object written by an earlier stage; any problem is one StudyError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise StudyError(f"{path}: no such file (a {what} is expected here)" + (f"; {hint}" if hint else ""))
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StudyError(f"{path}: not a readable {what} ({exc})") from None
    if not isinstance(record, dict):
        raise StudyError(f"{path}: a {what} must be a JSON object")
    return record


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def zip_bytes(entries: Mapping[str, bytes]) -> bytes:
    """The bytes of a deterministic zip archive holding ``entries`` (name -> bytes)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as zf:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = 3  # unix
            info.external_attr = ZIP_FILE_MODE
            zf.writestr(info, entries[name])
    return buffer.getvalue()


def write_zip(path: str | os.PathLike, entries: Mapping[str, bytes]) -> None:
    write_bytes(path, zip_bytes(entries))


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.asarray(array).copy(order="C"), allow_pickle=False)
    return buffer.getvalue()


def write_npz(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` as an uncompressed, byte-deterministic ``.npz``."""
    entries = {}
    for key, value in arrays.items():
        array = np.asarray(value)
        if array.dtype.hasobject:
            raise TypeError(f"refusing to write object array {key!r}: it would need pickle")
        entries[f"{key}.npy"] = npy_bytes(array)
    write_zip(path, entries)


def json_array(obj) -> np.ndarray:
    """A JSON document as a 0-d unicode array: loads with ``allow_pickle=False``."""
    return np.array(json.dumps(obj, sort_keys=True, allow_nan=False))


def read_npz(path: str | os.PathLike, what: str, error: type[StudyError] = StudyError, hint: str = "") -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file, read into memory without unpickling.

    Any problem is ``error`` naming the file and ``what`` it should be: missing (then ``hint``
    says how to make it), not a zip, truncated, or holding a pickled object array.
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: no such file (a {what} file is expected here)" + (f"; {hint}" if hint else ""))
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {}
            for key in npz.files:
                try:
                    arrays[key] = npz[key]
                except ValueError as exc:
                    raise error(
                        f"{path}: key {key!r} holds a pickled object ({exc}); a {what} file holds plain arrays only"
                    ) from None
            return arrays
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise error(f"{path}: not a readable .npz file (a {what} file was expected: {exc})") from None


def read_metadata(arrays: Mapping[str, np.ndarray], where: str, error: type[StudyError] = StudyError) -> dict:
    """The ``_metadata`` entry (a JSON object stored as a 0-d unicode array) as a dict."""
    if "_metadata" not in arrays:
        raise error(f"{where}: missing key '_metadata'")
    meta = arrays["_metadata"]
    if meta.dtype.kind != "U" or meta.ndim != 0:
        raise error(f"{where}: _metadata must be a JSON string (0-d unicode array), got {meta.dtype} {meta.shape}")
    try:
        parsed = json.loads(str(meta.item()))
    except json.JSONDecodeError as exc:
        raise error(f"{where}: _metadata is not valid JSON ({exc})") from None
    if not isinstance(parsed, dict):
        raise error(f"{where}: _metadata must be a JSON object")
    return parsed


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes (``sha256``; ``md5`` is what dvc.lock records)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, algorithm).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    return file_digest(path, "sha256")


def derive_seed(*parts) -> int:
    """A 63-bit seed derived from ``parts`` with SHA-256 (stable across processes)."""
    text = "/".join(str(p) for p in parts).encode("utf-8")
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little") >> 1


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
