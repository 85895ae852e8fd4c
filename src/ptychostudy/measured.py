"""The measured Siemens-star data: pty-chi and the network on real patterns, judged without a truth.

This module reads the data and the stages' result files; the stages ``measured_ptychi@A``,
``measured_ptychi@B``, ``measured_pinn`` and ``measured_compare`` are the modules of those names
(params ``measured.*``). The data (``data/base/siemens_star``, see its PROVENANCE) are 516 far-field
patterns of a Siemens star measured at the APS Velociprobe, 128 × 128 counts with zero frequency at
the array corners, scan positions in pixels, and an *analytic* zone-plate probe guess. No object is
known, so quality is agreement:

* the scan is split into two independent halves, A (even scan index) and B (odd), each covering the
  whole star;
* ``measured_ptychi``: pty-chi's tuned arm (LSQML with the noise model, TV weight, momentum and epochs
  the tune stage selected on the train split of the study cell ``measured.tuning_*``) reconstructs
  each half from the probe guess, refining the probe;
* ``measured_pinn``: the network (``train.*`` with the view ``measured.network_view``'s gridsize and
  canvas) trained self-supervised through the physics on half A's patterns, with the probe pty-chi
  refined on half A, then applied to half B's patterns (and to A's, its training data);
* ``measured_compare``: the one scoring path (``metrics.score_arm``) with a reconstruction in the
  place of the truth: pty-chi A against pty-chi B (two independent halves: the FRC of the data), the
  network on B against pty-chi B (the same patterns) and against pty-chi A (independent patterns),
  and a blank object (the floor).

Geometry: the detector is cropped to its central ``measured.crop`` pixels (in the far field the
object pixel grows by 128 / crop, the field of view stays), so the positions shrink by that factor;
the probe guess is resampled by cropping its far field. The object grid is the smallest multiple of
8 pixels that holds every patch, with the study's position convention (``physics``); pty-chi's is
put on the same grid exactly as Phase F does (``reconstruct.origin``).
"""

from __future__ import annotations

import bz2
import io
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ptychostudy import StudyError, stage
from ptychostudy.dataset import Split
from ptychostudy.grouping import make_groups
from ptychostudy.io import derive_seed, sha256_file
from ptychostudy.npz import json_array, read_metadata, read_npz, write_npz
from ptychostudy.params import Params

HALVES = ("A", "B")  # even and odd scan index
RAW_SIDE = 128  # the measured patterns' side
GRID_MULTIPLE = 8  # the object grid's side is a multiple of this
RESULT_KEYS = ("object", "cost", "probe", "_metadata")
class MeasuredDataError(StudyError):
    """The measured data file is missing, changed or malformed."""


@dataclass
class Measured:
    """The measured data, cropped and on the object grid."""

    counts: np.ndarray  # (n, crop, crop) float32 photon counts, zero frequency at the centre
    positions: np.ndarray  # (n, 2) patch centres (y, x) in object pixels of the cropped geometry
    probe_guess: np.ndarray  # (crop, crop) complex128, unit power: the analytic zone plate, resampled
    shape: tuple[int, int]  # the object grid
    facts: dict

    def half(self, name: str) -> np.ndarray:
        """Scan indices of one half: A even, B odd."""
        if name not in HALVES:
            raise StudyError(f"unknown half {name!r}; the halves are {', '.join(HALVES)}")
        return np.arange(HALVES.index(name), len(self.counts), 2)


def crop_far_field(image: np.ndarray, crop: int) -> np.ndarray:
    """The central ``crop`` × ``crop`` pixels of centred far-field arrays (..., M, M)."""
    side = image.shape[-1]
    start = (side - crop) // 2
    return image[..., start : start + crop, start : start + crop]


def resample_probe(probe: np.ndarray, crop: int) -> np.ndarray:
    """A real-space probe whose far field is the central ``crop`` pixels of ``probe``'s, at unit power
    (the same field of view sampled with pixels side / crop times larger)."""
    field = np.fft.fftshift(np.fft.fft2(np.asarray(probe, dtype=np.complex128)))
    small = np.fft.ifft2(np.fft.ifftshift(crop_far_field(field, crop)))
    return small / math.sqrt(float((np.abs(small) ** 2).sum()))


def load(cfg: Params, path) -> Measured:
    """Read the measured file (its sha256 checked against ``measured.data_sha256``), check it, crop it."""
    m = cfg.measured
    path = Path(path)
    if not path.is_file():
        raise MeasuredDataError(f"{path}: no such file (the measured Siemens-star data, data/base/siemens_star)")
    digest = sha256_file(path)
    if digest != m.data_sha256:
        raise MeasuredDataError(f"{path}: sha256 {digest} differs from measured.data_sha256 {m.data_sha256}; "
                                "the file changed or is another file")
    try:
        with np.load(io.BytesIO(bz2.decompress(path.read_bytes())), allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise MeasuredDataError(f"{path}: not a bzip2-compressed .npz of plain arrays ({exc})") from None
    missing = [key for key in ("data", "scan", "probe") if key not in arrays]
    if missing:
        raise MeasuredDataError(f"{path}: missing key {missing[0]!r} (expected data, scan, probe)")
    data = arrays["data"].reshape(-1, *arrays["data"].shape[-2:])
    scan = arrays["scan"].reshape(-1, 2).astype(np.float64)
    probe = arrays["probe"].reshape(arrays["probe"].shape[-2:])
    if data.shape[1:] != (RAW_SIDE, RAW_SIDE) or probe.shape != (RAW_SIDE, RAW_SIDE) or len(scan) != len(data):
        raise MeasuredDataError(f"{path}: expected n × {RAW_SIDE} × {RAW_SIDE} patterns, n positions and a "
                                f"{RAW_SIDE} × {RAW_SIDE} probe; got {data.shape}, {scan.shape}, {probe.shape}")
    if not (np.all(np.isfinite(data)) and np.all(np.isfinite(scan)) and np.all(np.isfinite(probe))):
        raise MeasuredDataError(f"{path}: holds NaN or Inf")
    if np.any(data < 0):
        raise MeasuredDataError(f"{path}: holds negative counts")
    if m.crop > RAW_SIDE:
        raise StudyError(f"measured.crop = {m.crop} exceeds the detector's {RAW_SIDE} pixels")
    counts = crop_far_field(np.fft.fftshift(data, axes=(-2, -1)), m.crop).astype(np.float32)
    factor = RAW_SIDE / m.crop
    centred = scan / factor  # (y, x): the file's first coordinate is the row
    reach = float(np.abs(centred).max())
    side = GRID_MULTIPLE * math.ceil((2 * math.ceil(reach) + m.crop + 4) / GRID_MULTIPLE)
    facts = {"patterns": int(len(data)), "detector_px": RAW_SIDE, "crop_px": m.crop,
             "kept_counts_fraction": float(counts.sum(dtype=np.float64) / data.sum(dtype=np.float64)),
             "mean_counts_per_pattern": float(counts.sum(axis=(1, 2), dtype=np.float64).mean()),
             "object_pixel_factor": factor, "object_grid_px": [side, side],
             "scan_extent_px": [float(np.ptp(centred[:, 0])), float(np.ptp(centred[:, 1]))]}
    return Measured(counts, centred + side / 2, resample_probe(probe, m.crop), (side, side), facts)


def split_of(cfg: Params, data: Measured, half: str, probe: np.ndarray, intensity_scale: float,
             gridsize: int = 1) -> Split:
    """One half as a ``dataset.Split``: ``probe`` (unit power) with ``intensity_scale`` predicts the counts.
    ``truth`` is a blank object of the grid's shape (only its shape is used: no truth exists) and the
    featured region is the whole grid. Groups of ``gridsize``² as Phase D forms them (``views.*``)."""
    idx = data.half(half)
    positions = data.positions[idx]
    if gridsize == 1:
        groups = np.arange(len(idx), dtype=np.int64)[:, None]
    else:
        rng = np.random.default_rng(derive_seed(cfg.measured.seed, "groups", half))
        groups = make_groups(positions, gridsize * gridsize, cfg.views.neighbours, cfg.views.groups_per_seed, rng)
    height, width = data.shape
    return Split(
        amplitude=torch.from_numpy(np.sqrt(data.counts[idx].astype(np.float64)).astype(np.float32)),
        positions=positions, groups=groups, truth=np.ones(data.shape, dtype=np.complex64),
        probe=torch.from_numpy(np.asarray(probe, dtype=np.complex64)), intensity_scale=float(intensity_scale),
        featured=(0, height - 1, 0, width - 1),
    )


def guess_scale(data: Measured) -> float:
    """The probe guess's scale: a unit-power probe through a transparent object gives the mean counts."""
    return math.sqrt(float(data.counts.sum(axis=(1, 2), dtype=np.float64).mean()))


def normalised(probe: np.ndarray, intensity_scale: float) -> tuple[np.ndarray, float]:
    """(unit-power probe, scale) that predict the same counts as ``probe`` with ``intensity_scale``."""
    power = math.sqrt(float((np.abs(probe) ** 2).sum()))
    return np.asarray(probe / power, dtype=np.complex64), float(intensity_scale * power)


def write_result(path, obj: np.ndarray, cost: np.ndarray, probe: np.ndarray, record: dict) -> None:
    write_npz(path, {"object": np.asarray(obj, dtype=np.complex64), "cost": np.asarray(cost, dtype=np.float64),
                     "probe": np.asarray(probe, dtype=np.complex64), "_metadata": json_array(record)})


def read_result(path, what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """(object, cost, probe, metadata) of a measured stage's result file (no pickle)."""
    arrays = read_npz(path, what, hint="run the measured stages first (dvc repro measured_compare)")
    if sorted(arrays) != sorted(RESULT_KEYS):
        raise StudyError(f"{path}: expected the keys {', '.join(RESULT_KEYS)}, found {', '.join(sorted(arrays))}")
    return arrays["object"], arrays["cost"], arrays["probe"], read_metadata(arrays, str(path))


PINN_KEYS = ("object", "object_train", "cost", "_metadata")


def read_pinn(path) -> tuple[np.ndarray, np.ndarray]:
    """(object of half B, object of half A) of the measured network (no pickle)."""
    arrays = read_npz(path, "measured network result", hint="run the measured_pinn stage first")
    if sorted(arrays) != sorted(PINN_KEYS):
        raise StudyError(f"{path}: expected the keys {', '.join(PINN_KEYS)}, found {', '.join(sorted(arrays))}")
    return arrays["object"], arrays["object_train"]


MEASURED = ("The measured Siemens star (stages measured_ptychi, measured_pinn, measured_compare; params measured.*): 516 real patterns, no ground "
              "truth, the scan split into halves A (even index) and B (odd). ")


def add_arguments(p) -> None:
    """Arguments of every measured-data stage: params and the measured file."""
    stage.add_params(p)
    p.add_argument("--data", type=Path, required=True, help="the measured file (siemens-star-small.npz.bz2)")
