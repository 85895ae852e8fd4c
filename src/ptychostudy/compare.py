"""Phase G: every arm of one dose × view against the ground truth, aligned and scored alike.

Arms, all on the view's test split (the same patterns and positions):

* ``pinn``     — the network trained on this view (gridsize > 1 views only);
* ``pinn_gs1`` — the gridsize-1 network of the baseline view at this dose, applied to
  this view's patterns one by one;
* ``ptychi``   — pty-chi LSQML on the same patterns (Phase F).

Regions: ``scanned`` = where the summed probe intensity of the split's positions reaches
``compare.scanned_threshold`` of its maximum (elsewhere no arm has data); ``featured`` =
that ∩ the object's featured region (the headline: the flat padding around the Run1084
structure flatters every image metric). Each arm is registered inside ``scanned`` and
then, per region, its phase plane and mean amplitude are fitted (``metrics.align``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ptychostudy import StudyError, physics, study_figures
from ptychostudy.config import Config
from ptychostudy.dataset import read_dataset
from ptychostudy.io import sha256_file, write_json, write_text
from ptychostudy.iterative import read_reconstruction
from ptychostudy.metrics import align, fourier_shift, register, score
from ptychostudy.model import load_bundle
from ptychostudy.infer import Split, predict_and_stitch, setup_torch
from ptychostudy.views import VIEW_SUMMARY

PARTS = ("featured", "scanned")
ARM_LABELS = {
    "pinn": "PINN (this view's network)",
    "pinn_gs1": "PINN gridsize 1 (baseline network)",
    "ptychi": "pty-chi LSQML",
}
CSV_HEADER = "model,metric,part,value\n"


def baseline_view(cfg: Config) -> str | None:
    """The first view of the study with gridsize 1: its network is the gridsize-1 arm."""
    return next((v for v in cfg.study.views if cfg.view(v).gridsize == 1), None)


def bundle_path(models: Path, dose: int, view: str) -> Path:
    return Path(models) / f"dose_{dose}" / view / "wts.h5.zip"


def arms(cfg: Config, view: str) -> list[str]:
    names = ["pinn"] if cfg.view(view).gridsize > 1 else []
    if baseline_view(cfg) is not None:
        names.append("pinn_gs1")
    return names + ["ptychi"]


def regions(split: Split, threshold: float) -> dict[str, np.ndarray]:
    """Boolean masks of the scanned region and of its featured part."""
    size = split.probe.shape[-1]
    k = split.positions.shape[0]
    power = (split.probe.abs() ** 2).to(torch.float32).expand(k, size, size)
    y0 = physics.top_left(torch.from_numpy(split.positions[:, 0]), size).to(torch.float32)
    x0 = physics.top_left(torch.from_numpy(split.positions[:, 1]), size).to(torch.float32)
    illumination = physics.place_patches(power, y0, x0, split.truth.shape).numpy()
    scanned = illumination >= threshold * illumination.max()
    r0, r1, c0, c1 = split.featured
    featured = np.zeros_like(scanned)
    featured[r0:r1, c0:c1] = True
    return {"featured": scanned & featured, "scanned": scanned}


def network_reconstruction(cfg: Config, bundle, data: dict, gridsize: int, device, bar) -> tuple[np.ndarray, float]:
    """Stitched reconstruction of ``data`` by a bundle (a path or a ``LoadedModel``) and the seconds it took."""
    loaded = load_bundle(bundle) if isinstance(bundle, (str, Path)) else bundle
    if loaded.model.arch.channels != gridsize * gridsize:
        raise StudyError(f"{bundle}: a network for {loaded.model.arch.channels} patterns per group, expected {gridsize ** 2}")
    split = Split.from_arrays(data, gridsize)
    model = loaded.model.to(device)
    start = time.perf_counter()
    canvas, _ = predict_and_stitch(
        model, split, cfg.train.stitch_fraction, cfg.train.phase_sync, cfg.compare.inference_batch, device, bar
    )
    return canvas, time.perf_counter() - start


def _finite(value):
    """JSON has no infinity: a perfect score's PSNR (MSE 0) is stored as null."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value if not isinstance(value, float) or np.isfinite(value) else None


def _rows(model: str, part: str, scores: dict) -> list[str]:
    rows = []
    for quantity, metrics in scores.items():
        for metric, value in metrics.items():
            rows.append(f"{model},{quantity}_{metric},{part},{value:.6g}\n")
    return rows


def run(cfg: Config, dose, view: str, view_dir, models, iterative, out_dir, timing, *, progress: bool = True) -> dict:
    dose = cfg.dose(dose)
    definition = cfg.view(view)
    view_dir, models, iterative, out_dir, timing = map(Path, (view_dir, models, iterative, out_dir, timing))
    summary_path = view_dir / VIEW_SUMMARY
    if not summary_path.is_file():
        raise StudyError(f"{view_dir}: no {VIEW_SUMMARY}; run the views stage of dose {dose}, view {view} first")
    record = {"dose": dose, "view": view, "phase": "G", "split": "test"}
    csv_path, json_path, png_path = (out_dir / n for n in ("comparison_metrics.csv", "comparison.json", "comparison.png"))
    view_summary = json.loads(summary_path.read_text())
    if view_summary.get("skipped"):
        record.update(skipped=True, reason=view_summary.get("reason", ""), arms=[])
        write_text(csv_path, CSV_HEADER)
        write_json(json_path, record)
        study_figures.skipped_figure({**record, "phase": "G"}, png_path)
        return record
    names = arms(cfg, view)
    paths = {"data": view_dir / "test.npz"}
    if "pinn" in names:
        paths["pinn"] = bundle_path(models, dose, view)
    if "pinn_gs1" in names:
        paths["pinn_gs1"] = bundle_path(models, dose, baseline_view(cfg))
    paths["ptychi"] = iterative
    missing = [f"{path} (needed for the {name} arm)" for name, path in paths.items() if not Path(path).is_file()]
    if missing:
        raise StudyError("missing input: " + "; ".join(missing) + "; run the earlier stages first")
    # every input is read and checked before any work is done
    data = read_dataset(paths["data"], require_groups=definition.gridsize > 1)
    split = Split.from_arrays(data, 1)
    obj, cost, meta = read_reconstruction(iterative)
    if meta.get("skipped") or obj.shape != split.truth.shape:
        raise StudyError(f"{iterative}: holds no {split.truth.shape[0]}×{split.truth.shape[1]} object for dose {dose}, view {view}")
    networks = [n for n in names if n != "ptychi"]
    loaded = {name: load_bundle(paths[name]) for name in networks}
    masks = regions(split, cfg.compare.scanned_threshold)
    device = setup_torch(cfg)

    reconstructions, seconds = {}, {}
    n_patterns = split.amplitude.shape[0]
    bar = tqdm(total=n_patterns * len(networks), desc=f"infer dose {dose} {view}", unit="pattern", disable=not progress)
    for name in networks:
        gridsize = definition.gridsize if name == "pinn" else 1
        reconstructions[name], seconds[name] = network_reconstruction(cfg, loaded[name], data, gridsize, device, bar)
    bar.close()
    reconstructions["ptychi"] = obj

    rows = [CSV_HEADER]
    results, aligned_images, shifts = {}, {}, {}
    for name in names:
        results[name] = {}
        # register once (inside the scanned region, the same for both parts), then fit each part's
        # phase plane and mean amplitude (align with max_shift 0 does only that)
        recon = np.asarray(reconstructions[name], dtype=np.complex128)
        shifts[name] = shift = register(np.abs(recon), np.abs(split.truth), masks["scanned"], cfg.compare.max_shift_px) \
            if cfg.compare.max_shift_px > 0 else (0.0, 0.0)
        if shift[0] or shift[1]:
            recon = fourier_shift(recon, *shift)
        for part in PARTS:
            aligned, _ = align(recon, split.truth, masks["scanned"], masks[part], 0)
            results[name][part] = score(aligned, split.truth, masks[part], cfg.compare.ms_ssim_sigma, cfg.compare.frc_taper)
            rows += _rows(name, part, results[name][part])
            if part == "featured":
                aligned_images[name] = aligned
        rows.append(f"{name},registration_dy_px,scanned,{shifts[name][0]:.6g}\n")
        rows.append(f"{name},registration_dx_px,scanned,{shifts[name][1]:.6g}\n")
    record.update(
        skipped=False,
        arms=names,
        labels={n: ARM_LABELS[n] for n in names},
        inputs={k: {"path": str(p), "sha256": sha256_file(p)} for k, p in paths.items()},
        patterns=int(n_patterns),
        region_pixels={part: int(m.sum()) for part, m in masks.items()},
        registration_px={n: list(s) for n, s in shifts.items()},
        ptychi={"epochs": meta.get("epochs"), "cost_final": meta.get("cost_final")},
        scores=_finite(results),
    )
    write_text(csv_path, "".join(rows))
    write_json(json_path, record)
    study_figures.comparison_figure(record, split.truth, aligned_images, masks, png_path)
    write_json(timing, {"dose": dose, "view": view, "inference_seconds": seconds, "patterns": int(n_patterns),
                        "threads": cfg.train.threads, "torch": torch.__version__})
    return {**record, "inference_seconds": seconds}


def headline(record: dict) -> str:
    if record.get("skipped"):
        return f"compare dose {record['dose']} {record['view']}: SKIPPED ({record['reason']})"
    parts = []
    for name in record["arms"]:
        f = record["scores"][name]["featured"]
        parts.append(f"{name} phase SSIM {f['phase']['ssim']:.3f} r {f['phase']['pearson_r']:.3f} / "
                     f"amplitude SSIM {f['amplitude']['ssim']:.3f}")
    return f"compare dose {record['dose']} {record['view']} (featured region): " + "; ".join(parts)
