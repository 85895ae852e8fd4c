"""File I/O: atomic writes, canonical JSON, hashing and derived seeds (zip and NPZ files: module ``npz``).

Every output of the pipeline is written through ``atomic_path``: it yields a temporary path in the
destination folder, and the file only appears at its final name (``os.replace``) once it was written
completely, so a killed stage never leaves a file that looks finished.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Iterator

from ptychostudy import StudyError


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


def finite(obj):
    """``obj`` with every non-finite float as None: a quantity that does not exist (an FRC that never crossed)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def json_text(obj) -> str:
    """Canonical JSON text: sorted keys, two-space indent, trailing newline; NaN and infinities as null (JSON has
    no such numbers)."""
    return json.dumps(finite(obj), sort_keys=True, indent=2, allow_nan=False) + "\n"


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
