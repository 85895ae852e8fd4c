"""Phase G on the tiny profile: every arm scored alike, tidy CSV, clear errors."""

from __future__ import annotations

import csv
import hashlib
import json

import numpy as np
import pytest

from ptychostudy import StudyError
from ptychostudy.compare import headline, run as compare_run
from ptychostudy.infer import run as infer_run
from ptychostudy.arms import arms, baseline_view
from ptychostudy.layout import bundle_path
from ptychostudy.metrics import PARTS, QUANTITIES
from ptychostudy.refine import run as refine_run
from ptychostudy.train import run as train_run
from ptychostudy.warmstart import run as warmstart_run


ALL_ARMS = ["pinn", "pinn_refined", "pinn_gs1", "ptychi", "ptychi_tuned", "ptychi_heldout", "gradient", "gradient_heldout",
            "pinn_ptychi", "pinn_gradient", "blank"]


@pytest.fixture(scope="module")
def cell(tiny_cfg, tiny_views, tiny_iterative, tmp_path_factory):
    """Bundles of the baseline and dense views, the iterative arms on the dense test split (dose 1e5), the
    dense network refined on it, the infer stage's objects of the dense cell and the tuned solvers started from
    the dense network's object: (folder, inferred, Phase F folder)."""
    import shutil

    out = tmp_path_factory.mktemp("cell")
    models = out / "models"
    for view in ("baseline", "dense"):
        train_run(tiny_cfg, "run1084", 100000, view, tiny_views[view], bundle_path(models, "run1084", 100000, view),
                  out / f"{view}.json", out / f"{view}.csv", out / f"{view}-timing.json", out / f"{view}-shown.npz",
                  progress=False)
    rec = shutil.copytree(tiny_iterative[0], out / "reconstruct")
    refine_run(tiny_cfg, "run1084", 100000, "dense", tiny_views["dense"], bundle_path(models, "run1084", 100000, "dense"),
               rec / "pinn_refined.npz", out / "refine.json", out / "refine-timing.json", progress=False)
    inferred = out / "inferred.npz"
    infer_run(tiny_cfg, "run1084", 100000, "dense", tiny_views["dense"], models, inferred, out / "infer-timing.json", progress=False)
    warmstart_run(tiny_cfg, "run1084", 100000, "dense", tiny_views["dense"], inferred, tiny_iterative[1], rec / "ptychi_tuned_curve.npz", rec / "gradient_curve.npz", rec / "pinn_ptychi.npz",
                  rec / "pinn_gradient.npz", out / "warmstart.json", out / "warmstart-timing.json", progress=False)
    return out, inferred, rec


def test_arms_of_each_view(tiny_cfg):
    assert baseline_view(tiny_cfg, "run1084") == "baseline"
    assert arms(tiny_cfg, "run1084", "dense") == ALL_ARMS
    assert arms(tiny_cfg, "run1084", "baseline") == ALL_ARMS[1:]
    # an object whose subset holds no gridsize-1 view (the tiny profile's star: dense only) has no gridsize-1 arm
    assert baseline_view(tiny_cfg, "siemens_star") is None
    assert arms(tiny_cfg, "siemens_star", "dense") == [a for a in ALL_ARMS if a != "pinn_gs1"]


def test_every_arm_metric_and_region_is_in_the_tidy_csv(cell, tiny_cfg, tiny_views):
    out, inferred, rec = cell
    record = compare_run(tiny_cfg, "run1084", 100000, "dense", tiny_views["dense"], inferred, rec, out / "g")
    with open(out / "g" / "comparison_metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert set(rows[0]) == {"model", "metric", "part", "value"}
    got = {(r["model"], r["metric"], r["part"]) for r in rows}
    for model in ALL_ARMS:
        for part in PARTS:
            for quantity in QUANTITIES:
                for metric in ("mae", "mse", "psnr", "ssim", "ms_ssim", "pearson_r", "frc50_cycles_per_px",
                               "frc50_resolution_px", "frc1_7_cycles_per_px", "frc1_7_resolution_px"):
                    assert (model, f"{quantity}_{metric}", part) in got
            assert (model, "phase_spread_ratio", part) in got
        assert (model, "registration_dy_px", "scanned") in got
    values = {(r["model"], r["metric"], r["part"]): float(r["value"]) for r in rows}
    for model in record["arms"]:
        # the featured region is part of the scanned region, and both regions were scored separately
        assert record["region_pixels"]["featured"] < record["region_pixels"]["scanned"]
        assert -1 <= values[(model, "phase_pearson_r", "featured")] <= 1
        assert abs(values[(model, "registration_dy_px", "scanned")]) <= tiny_cfg.compare.max_shift_px
    assert (out / "g" / "comparison.png").stat().st_size > 10_000
    saved = json.loads((out / "g" / "comparison.json").read_text())
    assert saved["arms"] == ALL_ARMS and saved["patterns"] > 0
    # each stored arm says how its settings were chosen: the tuned ones from the train-split selection, the
    # refinement's fixed beforehand
    assert "original study" in saved["stored"]["ptychi"]["settings"]["chosen_by"]
    assert "nothing selected" in saved["stored"]["pinn_refined"]["settings"]["chosen_by"]
    for arm in ("ptychi_tuned", "ptychi_heldout", "gradient", "gradient_heldout"):
        assert "selected on the train split" in saved["stored"][arm]["settings"]["chosen_by"]
    # the floor: a blank object has no amplitude structure (r 0, no registration) and a phase whose only
    # correlation with the truth is the fitted offset and ramp
    blank = saved["scores"]["blank"]["featured"]
    assert blank["amplitude"]["pearson_r"] == 0.0 and saved["registration_px"]["blank"] == [0.0, 0.0]
    assert abs(blank["phase"]["pearson_r"]) < 0.6
    assert set(json.loads((out / "infer-timing.json").read_text())["inference_seconds"]) == {"pinn", "pinn_gs1"}
    assert saved["inputs"]["inferred"]["sha256"] == hashlib.sha256(inferred.read_bytes()).hexdigest()
    assert "pinn phase SSIM" in headline(record)


def test_training_and_the_comparison_score_alike(cell, tiny_cfg, tiny_views):
    """One scoring path: the dense job's final test scores (logged by training, every pattern of the
    gridsize-2 split, the same stitching settings) are the comparison's pinn scores, to the last digit."""
    out, inferred, rec = cell
    assert tiny_cfg.train.eval_stitch_fraction == tiny_cfg.infer.stitch_fraction
    assert tiny_cfg.train.eval_phase_sync == tiny_cfg.infer.phase_sync
    record = compare_run(tiny_cfg, "run1084", 100000, "dense", tiny_views["dense"], inferred, rec, out / "same")
    logged = json.loads((out / "dense.json").read_text())["scores"]["test"]
    pinn = record["scores"]["pinn"]["featured"]
    assert logged["phase_r"] == pinn["phase"]["pearson_r"]
    assert logged["amplitude_r"] == pinn["amplitude"]["pearson_r"]
    assert logged["phase_spread_ratio"] == pinn["phase"]["spread_ratio"]


def test_the_comparison_is_deterministic(cell, tiny_cfg, tiny_views):
    out, inferred, rec = cell
    for attempt in ("a", "b"):
        compare_run(tiny_cfg, "run1084", 100000, "dense", tiny_views["dense"], inferred, rec, out / attempt)
    for name in ("comparison_metrics.csv", "comparison.json", "comparison.png"):
        assert (out / "a" / name).read_bytes() == (out / "b" / name).read_bytes(), name


def test_missing_inputs_are_named(cell, tiny_cfg, tiny_views, tmp_path):
    import shutil

    out, inferred, rec = cell
    with pytest.raises(StudyError, match="none.npz \\(needed for the inferred arms\\)"):
        compare_run(tiny_cfg, "run1084", 100000, "dense", tiny_views["dense"], tmp_path / "none.npz", rec,
                    tmp_path / "g")
    partial = tmp_path / "partial"
    shutil.copytree(rec, partial)
    (partial / "ptychi_tuned.npz").unlink()
    with pytest.raises(StudyError, match="ptychi_tuned arm"):
        compare_run(tiny_cfg, "run1084", 100000, "dense", tiny_views["dense"], inferred, partial, tmp_path / "g")
    assert not (tmp_path / "g").exists()  # nothing half-written
    # an object of another data set (wrong grid) is refused
    from ptychostudy.stored import write_reconstruction

    write_reconstruction(partial / "ptychi_tuned.npz", np.ones((8, 8)), np.ones(2), {"skipped": False})
    with pytest.raises(StudyError, match="holds no"):
        compare_run(tiny_cfg, "run1084", 100000, "dense", tiny_views["dense"], inferred, partial, tmp_path / "g")
