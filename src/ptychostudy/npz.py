"""Zip and NPZ files: byte-deterministic writing and the one NPZ reader.

* ``write_zip`` writes a zip whose bytes depend only on its entries: fixed entry dates, sorted entry
  order, fixed attributes, no compression (DEFLATE output can differ between zlib builds).
* ``write_npz`` writes a NumPy ``.npz`` through ``write_zip`` (``np.savez`` embeds the current time
  in every entry), and never pickles.

Every ``.npz`` the study reads goes through ``read_npz`` (never unpickles; one set of refusals for
every file kind), and its ``_metadata`` JSON through ``read_metadata``.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path
from typing import Mapping

import numpy as np

from ptychostudy import StudyError
from ptychostudy.io import finite, write_bytes

ZIP_DATE = (1980, 1, 1, 0, 0, 0)
ZIP_FILE_MODE = 0o100644 << 16  # regular file, rw-r--r--


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
    """A JSON document as a 0-d unicode array: loads with ``allow_pickle=False``. Non-finite floats are written as
    null, as ``io.json_text`` writes them (a quantity that does not exist, such as an FRC that never crossed)."""
    return np.array(json.dumps(finite(obj), sort_keys=True, allow_nan=False))


MAX_MEMBER_BYTES = 16 << 30  # an array of an .npz the study reads: far above any study file (full profile: 0.7 GiB)
MAX_RATIO = 200  # a compressed member may inflate at most this many times its stored size (data: < 10×; a bomb ~1000×)


def _sniff(path: Path) -> str:
    """What a file that is no zip archive looks like, in a few words."""
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head.startswith(b"\x93NUMPY"):
        return "a single .npy array, not an .npz archive (np.savez writes one)"
    if head.startswith(b"BZh"):
        return "bz2-compressed, not an .npz archive (decompress it first)"
    if head.startswith(b"\x1f\x8b"):
        return "gzip-compressed, not an .npz archive"
    if head.startswith(b"\x89HDF"):
        return "an HDF5 file, not an .npz archive"
    if head.startswith(b"PK"):
        return "a truncated or corrupt zip archive"
    return "not a zip archive (text, or another format)"


def _check_members(zf: zipfile.ZipFile, path: Path, what: str, error: type[StudyError]) -> None:
    """Refuse, before anything is inflated, a member too large, inflating too far, or whose .npy header
    describes more bytes than the member holds."""
    for info in zf.infolist():
        if info.file_size > MAX_MEMBER_BYTES:
            raise error(f"{path}: member {info.filename[:80]!r} would inflate to {info.file_size} bytes, over the "
                        f"{MAX_MEMBER_BYTES}-byte limit of a {what} file")
        if info.compress_type != zipfile.ZIP_STORED and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            raise error(f"{path}: member {info.filename[:80]!r} would inflate {info.file_size // max(info.compress_size, 1)} "
                        f"times (a decompression bomb?); refused")
        with zf.open(info) as fh:
            version = np.lib.format.read_magic(fh)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read_header(fh)
            if dtype.hasobject:
                raise error(f"{path}: key {info.filename[:-4]!r} holds a pickled object; a {what} file holds plain arrays only")
            claimed = int(np.prod(shape, dtype=object)) * dtype.itemsize
            if fh.tell() + claimed != info.file_size:
                raise error(f"{path}: member {info.filename[:80]!r} describes {claimed} bytes of data but holds "
                            f"{info.file_size - fh.tell()} (truncated or forged)")


def read_npz(path: str | os.PathLike, what: str, error: type[StudyError] = StudyError, hint: str = "") -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file, read into memory without unpickling.

    Any problem is ``error`` naming the file and ``what`` it should be: missing (then ``hint`` says how to
    make it), a folder, no zip archive (saying what it looks like), a member too large, a decompression
    bomb, a header that claims more than the member holds (all refused before anything is inflated),
    truncated, or holding a pickled object array.
    """
    path = Path(path)
    if path.is_dir():
        raise error(f"{path}: a folder, not a {what} file")
    if not path.is_file():
        raise error(f"{path}: no such file (a {what} file is expected here)" + (f"; {hint}" if hint else ""))
    if not zipfile.is_zipfile(path):
        raise error(f"{path}: not a readable .npz file: {_sniff(path)} (a {what} file was expected)")
    try:
        with zipfile.ZipFile(path) as zf:
            _check_members(zf, path, what, error)
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, MemoryError, NotImplementedError) as exc:
        raise error(f"{path}: not a readable .npz file (a {what} file was expected: {str(exc)[:200]})") from None


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
