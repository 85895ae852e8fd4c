"""The measured Siemens-star data: pty-chi and the network on real patterns, judged without a truth.

The stages ``measured_ptychi@A``, ``measured_ptychi@B``, ``measured_pinn`` and ``measured_compare``
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

import argparse
import bz2
import importlib.metadata
import io
import math
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from tqdm import tqdm

from ptychostudy import StudyError, figures, stage
from ptychostudy.bundle import save_model
from ptychostudy.dataset import Split
from ptychostudy.grouping import make_groups
from ptychostudy.inference import predict_and_stitch, setup_torch
from ptychostudy.io import derive_seed, sha256_file, write_json, write_text
from ptychostudy.metrics import frc_curve, regions, score_arm
from ptychostudy.npz import json_array, read_metadata, read_npz, write_npz
from ptychostudy.params import Params, as_dict
from ptychostudy.params import load as load_params
from ptychostudy.params.compare import CompareParams
from ptychostudy.params.infer import InferParams
from ptychostudy.params.measured import MeasuredParams
from ptychostudy.params.reconstruct import PtychiSetting
from ptychostudy.params.train import architecture
from ptychostudy.ptychi_solver import reconstruct, settings_of
from ptychostudy.training import Trainer

HALVES = ("A", "B")  # even and odd scan index
RAW_SIDE = 128  # the measured patterns' side
GRID_MULTIPLE = 8  # the object grid's side is a multiple of this
RESULT_KEYS = ("object", "cost", "probe", "_metadata")
PAIRS = {  # name -> (reconstruction, reference): the agreement scored in measured_compare
    "ptychi_A_vs_ptychi_B": ("ptychi_A", "ptychi_B"),
    "pinn_B_vs_ptychi_B": ("pinn_B", "ptychi_B"),
    "pinn_B_vs_ptychi_A": ("pinn_B", "ptychi_A"),
    "pinn_A_vs_ptychi_A": ("pinn_A", "ptychi_A"),
    "blank_vs_ptychi_B": ("blank", "ptychi_B"),
}
PAIR_NOTES = {
    "ptychi_A_vs_ptychi_B": "pty-chi on two independent halves of the scan (the data's own FRC)",
    "pinn_B_vs_ptychi_B": "the network and pty-chi on the same patterns (half B)",
    "pinn_B_vs_ptychi_A": "the network on half B against pty-chi on the independent half A",
    "pinn_A_vs_ptychi_A": "the network on its own training patterns (half A) against pty-chi on them",
    "blank_vs_ptychi_B": "a blank object scored the same way: the floor",
}


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


def _tuned_setting(cfg: Params, tuning) -> tuple[PtychiSetting, int, dict]:
    """pty-chi's tuned arm as the tune stage selected it for the study cell measured.tuning_dose × tuning_view."""
    m = cfg.measured
    setting, epochs, chosen = settings_of(cfg, "ptychi_tuned", m.tuning_dose, m.tuning_view, tuning)
    return setting, epochs, {**chosen, "chosen_by": f"{chosen['chosen_by']} of the study (dose {m.tuning_dose}, "
                                                    f"view {m.tuning_view})"}


# ---------------------------------------------------------------------------------------
# the stages


def run_ptychi(cfg: Params, half: str, data_path, tuning, out, report, timing, *, progress: bool = True) -> dict:
    """``measured_ptychi@<half>``: pty-chi's tuned arm on one half, the probe refined from the guess."""
    data = load(cfg, data_path)
    setting, epochs, chosen = _tuned_setting(cfg, tuning)
    m = cfg.measured
    split = split_of(cfg, data, half, data.probe_guess, guess_scale(data))
    torch.set_num_threads(m.threads)
    seed = derive_seed(m.seed, "ptychi", half) % (2**31)
    start = time.perf_counter()
    obj, cost, probe = reconstruct(setting, m.batch_size, split, epochs, seed, refine_probe=True, progress=progress,
                                   desc=f"measured pty-chi half {half}")
    seconds = time.perf_counter() - start
    probe, scale = normalised(probe, split.intensity_scale)
    record = {
        "half": half, "solver": "pty-chi LSQML, probe refined", "arm": "ptychi_tuned",
        "ptychi_version": importlib.metadata.version("ptychi"),
        "data": {"path": str(data_path), "sha256": m.data_sha256, **data.facts},
        "positions": split.patterns, "epochs": epochs, "intensity_scale": scale,
        "settings": {"noise_model": setting.noise_model, "tv_weight": setting.tv_weight, "momentum": setting.momentum,
                     "batch_size": m.batch_size, "seed": m.seed, "threads": m.threads, **chosen},
        "cost_first": float(cost[0]), "cost_final": float(cost[-1]),
    }
    write_result(out, obj, cost, probe, record)
    write_json(report, record)
    write_json(timing, {"stage": f"measured_ptychi@{half}", "seconds": seconds, "epochs": epochs,
                        "positions": split.patterns, "threads": m.threads, "torch": torch.__version__})
    return {**record, "seconds": seconds}


NETWORK_KEYS = {  # the params measured_pinn declares in dvc.yaml, and so the ones its bundle records
    "train": ("threads", "accelerator", "batch_size", "learning_rate", "learning_rate_final", "steps_per_epoch", "filters",
              "depth", "support", "amplitude_max", "skips", "inputs", "augment", "object_stride", "canvas"),
    "measured": ("data_sha256", "crop", "seed", "network_view", "tuning_dose", "epochs"),
}


def declared_params(cfg: Params) -> dict:
    """The params the measured network's bundle records: only those its stage declares (of ``train.canvas``
    the network view's entry), so that a key it does not read never changes its bytes."""
    record = {name: {k: v for k, v in as_dict(getattr(cfg, name)).items() if k in keys} for name, keys in NETWORK_KEYS.items()}
    view = cfg.measured.network_view
    record["train"]["canvas"] = {view: record["train"]["canvas"][view]}
    return record


def run_pinn(cfg: Params, data_path, ptychi_a, bundle, out, report, history, timing, *, progress: bool = True) -> dict:
    """``measured_pinn``: the network trained on half A (with pty-chi's probe of half A), applied to B and A."""
    data = load(cfg, data_path)
    _, _, probe, meta = read_result(ptychi_a, "measured pty-chi result")
    if meta.get("half") != "A":
        raise StudyError(f"{ptychi_a}: holds pty-chi's result of half {meta.get('half')}, the network needs half A's probe")
    m, t = cfg.measured, cfg.train
    gridsize = cfg.view(m.network_view).gridsize
    scale = float(meta["intensity_scale"])
    splits = {half: split_of(cfg, data, half, probe, scale, gridsize) for half in HALVES}
    device = setup_torch(t.threads, t.accelerator)
    seed = derive_seed(m.seed, "network")
    arch = architecture(cfg, m.network_view, m.tuning_dose, m.crop)
    trainer = Trainer(cfg, splits["A"], arch, seed, device)
    bar = tqdm(total=m.epochs * t.steps_per_epoch, desc="measured network (half A)", unit="step", disable=not progress)
    start = time.perf_counter()
    rows = trainer.fit(m.epochs, t.steps_per_epoch, bar=bar)
    seconds = time.perf_counter() - start
    bar.close()
    net = trainer.net.cpu()
    objects = {half: predict_and_stitch(net, split, cfg.infer.stitch_fraction, cfg.infer.phase_sync, cfg.infer.batch)[0]
               for half, split in splits.items()}
    save_model(bundle, net, splits["A"].probe, scale, {
        "measured": True, "trained_on": "half A of the measured Siemens star", "view": m.network_view,
        "gridsize": gridsize, "params": declared_params(cfg),
        "data_sha256": m.data_sha256, "probe_from": {"path": str(ptychi_a), "sha256": sha256_file(ptychi_a)},
    })
    loss = np.array([row["loss"] for row in rows])
    record = {
        "arm": "pinn", "trained_on": "A", "applied_to": "B", "view": m.network_view, "gridsize": gridsize,
        "groups": {half: int(split.groups.shape[0]) for half, split in splits.items()},
        "epochs": m.epochs, "steps": m.epochs * t.steps_per_epoch, "final_loss": float(loss[-1]),
        "probe_from": str(ptychi_a), "bundle": {"path": str(bundle), "sha256": sha256_file(bundle)},
    }
    write_npz(out, {"object": objects["B"].astype(np.complex64), "object_train": objects["A"].astype(np.complex64),
                    "cost": loss, "_metadata": json_array(record)})
    write_text(history, "epoch,loss\n" + "".join(f"{row['epoch']},{row['loss']:.6g}\n" for row in rows))
    write_json(report, record)
    write_json(timing, {"stage": "measured_pinn", "train_seconds": seconds,
                        "ms_per_step": 1000 * seconds / (m.epochs * t.steps_per_epoch), "threads": t.threads,
                        "torch": torch.__version__})
    return {**record, "seconds": seconds}


PINN_KEYS = ("object", "object_train", "cost", "_metadata")


def read_pinn(path) -> tuple[np.ndarray, np.ndarray]:
    """(object of half B, object of half A) of the measured network (no pickle)."""
    arrays = read_npz(path, "measured network result", hint="run the measured_pinn stage first")
    if sorted(arrays) != sorted(PINN_KEYS):
        raise StudyError(f"{path}: expected the keys {', '.join(PINN_KEYS)}, found {', '.join(sorted(arrays))}")
    return arrays["object"], arrays["object_train"]


def _headline(scores: dict) -> dict:
    p, a = scores["phase"], scores["amplitude"]
    return {"phase_r": p["pearson_r"], "phase_frc50_px": p["frc50_resolution_px"], "phase_frc1_7_px": p["frc1_7_resolution_px"],
            "amplitude_r": a["pearson_r"], "amplitude_frc50_px": a["frc50_resolution_px"]}


def run_compare(cfg: Params, data_path, ptychi_dir, pinn, out_dir, *, progress: bool = True) -> dict:
    """``measured_compare``: agreement of the reconstructions (``PAIRS``), a figure, a table."""
    data = load(cfg, data_path)
    ptychi_dir, out_dir = Path(ptychi_dir), Path(out_dir)
    images, probes = {}, {}
    for half in HALVES:
        obj, cost, probe, meta = read_result(ptychi_dir / f"ptychi_{half}.npz", "measured pty-chi result")
        if meta.get("half") != half or obj.shape != data.shape:
            raise StudyError(f"{ptychi_dir / f'ptychi_{half}.npz'}: not pty-chi's {data.shape} object of half {half}")
        images[f"ptychi_{half}"], probes[half] = obj, probe
    images["pinn_B"], images["pinn_A"] = read_pinn(pinn)
    images["blank"] = np.ones(data.shape, dtype=np.complex64)
    scanned = None
    for half in HALVES:  # the region both halves light
        lit = regions(SimpleNamespace(probe=probes[half], positions=data.positions[data.half(half)], truth=images["blank"],
                                      featured=(0, data.shape[0] - 1, 0, data.shape[1] - 1)),
                      cfg.compare.scanned_threshold)["scanned"]
        scanned = lit if scanned is None else scanned & lit
    masks = {"scanned": scanned}
    scored, curves = {}, {}
    for name, (moving, reference) in tqdm(PAIRS.items(), desc="measured agreement", disable=not progress):
        result = score_arm(images[moving], images[reference], masks, cfg.compare, ("scanned",))
        scored[name] = {**_headline(result.scores["scanned"]), "shift_px": list(result.shift), "note": PAIR_NOTES[name]}
        curves[name] = frc_curve(np.angle(result.aligned["scanned"]), np.angle(images[reference]), scanned,
                                 cfg.compare.frc_taper)
    record = {"data": {"path": str(data_path), "sha256": cfg.measured.data_sha256, **data.facts},
              "region": {"name": "scanned by both halves", "pixels": int(scanned.sum())}, "pairs": scored,
              "scoring": "metrics.score_arm with the second reconstruction in the place of the truth (registration, "
                         "phase offset and ramp, mean amplitude); FRC½ as a half-period resolution in object pixels"}
    write_json(out_dir / "measured.json", record)
    write_text(out_dir / "measured.md", table(record))
    write_text(out_dir / "frc.csv", "pair,cycles_per_px,phase_frc\n" + "".join(
        f"{name},{f:.6g},{c:.6g}\n" for name, (freqs, curve) in curves.items() for f, c in zip(freqs, curve)))
    figures.measured_figure(images, probes["A"], scanned, curves, record, out_dir / "measured.png")
    return record


def table(record: dict) -> str:
    """The agreement table (markdown), computed from the scores."""
    lines = ["| pair | phase r | phase FRC½ (px) | phase FRC 1/7 (px) | amplitude r | what it measures |",
             "|---|---:|---:|---:|---:|---|"]
    for name, s in record["pairs"].items():
        lines.append(f"| {name} | {s['phase_r']:.3f} | {s['phase_frc50_px']:.2f} | {s['phase_frc1_7_px']:.2f} | "
                     f"{s['amplitude_r']:.3f} | {s['note']} |")
    d = record["data"]
    return (f"# The measured Siemens star: agreement without a truth\n\n{d['patterns']} measured patterns, detector "
            f"cropped to {d['crop_px']} px (object pixel × {d['object_pixel_factor']:g}), halves of "
            f"{d['patterns'] // 2} positions; region: {record['region']['name']} ({record['region']['pixels']} px). "
            "Written by `ptychostudy measured-compare`.\n\n" + "\n".join(lines) + "\n")


def cli(args) -> None:
    """``ptychostudy measured-ptychi | measured-pinn | measured-compare``."""
    cfg = load_params(args.params, MeasuredParams, InferParams, CompareParams)
    progress = not args.no_progress
    if args.step == "ptychi":
        r = run_ptychi(cfg, args.half, args.data, args.tuning, args.out, args.report, args.timing, progress=progress)
        s = r["settings"]
        print(f"measured pty-chi half {r['half']}: {r['positions']} positions, {r['epochs']} LSQML epochs "
              f"({s['noise_model']}, TV {s['tv_weight']:g}, momentum {s['momentum']:g}, probe refined) in "
              f"{r['seconds']:.1f} s, cost {r['cost_first']:.4g} -> {r['cost_final']:.4g} -> {args.out}")
    elif args.step == "pinn":
        r = run_pinn(cfg, args.data, args.ptychi_a, args.bundle, args.out, args.report, args.history, args.timing,
                     progress=progress)
        print(f"measured network: {r['steps']} steps on half A in {r['seconds']:.1f} s, final loss "
              f"{r['final_loss']:.4f}; applied to half B -> {args.out}")
    else:
        r = run_compare(cfg, args.data, args.ptychi_dir, args.pinn, args.out_dir, progress=progress)
        for name, s in r["pairs"].items():
            print(f"{name}: phase r {s['phase_r']:.3f}, phase FRC½ {s['phase_frc50_px']:.2f} px")

MEASURED = ("The measured Siemens star (module measured.py, params measured.*): 516 real patterns, no ground "
              "truth, the scan split into halves A (even index) and B (odd). ")


def _add_measured(p) -> None:
    """Arguments of every measured-data stage: params and the measured file."""
    stage.add_params(p)
    p.add_argument("--data", type=Path, required=True, help="the measured file (siemens-star-small.npz.bz2)")


STEPS = {"ptychi": "measured-ptychi", "pinn": "measured-pinn", "compare": "measured-compare"}


def build_parser(prog: str = "python -m ptychostudy.measured") -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog=prog, description=MEASURED)
    sub = top.add_subparsers(dest="step", required=True, metavar="STEP")
    p = sub.add_parser("ptychi", help="measured data: pty-chi's tuned arm on one half of the scan, probe refined",
                       description=MEASURED + "Reconstruct one half with pty-chi LSQML from the analytic probe guess, "
                       "refining the probe, with the settings the tune stage selected on the train split of the study "
                       "cell measured.tuning_dose × measured.tuning_view. Writes the object, cost and refined probe "
                       "(.npz, no pickle), a record (JSON) and a timing file.")
    _add_measured(p)
    p.add_argument("--half", choices=("A", "B"), required=True, help="A: even scan indices, B: odd")
    p.add_argument("--tuning", type=Path, required=True, help="the tune stage's selection (JSON) of the tuning cell")
    stage.add_outputs(p)
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")

    p = sub.add_parser("pinn", help="measured data: the network trained on half A, applied to half B",
                       description=MEASURED + "Train the network (train.*, the view measured.network_view's gridsize "
                       "and canvas) self-supervised through the physics on half A's patterns with the probe pty-chi "
                       "refined on half A, then reconstruct both halves with it (infer.*). Writes the bundle, the "
                       "objects (.npz), a record, the loss per epoch (CSV) and a timing file.")
    _add_measured(p)
    p.add_argument("--ptychi-a", type=Path, required=True, help="measured-ptychi's result of half A (its probe is used)")
    p.add_argument("--bundle", type=Path, required=True, help="wts.h5.zip to write")
    p.add_argument("--out", type=Path, required=True, help="the network's objects (.npz) to write")
    p.add_argument("--report", type=Path, required=True, help="record (JSON) to write")
    p.add_argument("--history", type=Path, required=True, help="loss per epoch (CSV) to write")
    p.add_argument("--timing", type=Path, required=True, help="wall time (JSON) to write; kept out of DVC")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")

    p = sub.add_parser("compare", help="measured data: agreement of the reconstructions (FRC, phase r), figure",
                       description=MEASURED + "Score pty-chi A against pty-chi B (independent halves), the network on B "
                       "against pty-chi B and A, the network on A against pty-chi A, and a blank object (the floor), by "
                       "the study's one scoring path with the second reconstruction in the place of the truth, in the "
                       "region both halves light. Writes measured.json, measured.md, frc.csv and measured.png.")
    _add_measured(p)
    p.add_argument("--ptychi-dir", type=Path, required=True, help="folder of ptychi_A.npz and ptychi_B.npz")
    p.add_argument("--pinn", type=Path, required=True, help="measured-pinn's objects (.npz)")
    p.add_argument("--out-dir", type=Path, required=True, help="folder for measured.json, measured.md, frc.csv, measured.png")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")

    return top


def main(argv: list[str] | None = None, prog: str = "python -m ptychostudy.measured") -> int:
    return stage.main(cli, build_parser(prog), argv, timed=True)


if __name__ == "__main__":
    sys.exit(main())
