"""The test-time refinement arm (refine.py) on the tiny profile: it trains on the test patterns only, never
reads their truth, starts from the trained network exactly as Phase G infers it, and is deterministic."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from ptychostudy import StudyError
from ptychostudy.compare import run as compare_run
from ptychostudy.infer import run as infer_run
from ptychostudy.stored import read_reconstruction
from ptychostudy.layout import bundle_path
from ptychostudy.refine import checkpoint_steps, load, refine, run as refine_run
from ptychostudy.train import run as train_run
from ptychostudy.warmstart import run as warmstart_run


@pytest.fixture(scope="module")
def trained(tiny_cfg, tiny_views, tmp_path_factory):
    out = tmp_path_factory.mktemp("refine")
    models = out / "models"
    for view in ("baseline", "dense"):
        train_run(tiny_cfg, "run1084", 100000, view, tiny_views[view], bundle_path(models, "run1084", 100000, view), out / f"{view}.json",
                  out / f"{view}.csv", out / f"{view}-t.json", out / f"{view}-shown.npz", progress=False)
    return out, models


def _run(tiny_cfg, tiny_views, models, out, name, view="dense", bundle_view=None):
    return refine_run(tiny_cfg, "run1084", 100000, view, tiny_views[view], bundle_path(models, "run1084", 100000, bundle_view or view),
                      out / f"{name}.npz", out / f"{name}.json", out / f"{name}-timing.json", progress=False)


def test_refinement_record_curve_and_determinism(trained, tiny_cfg, tiny_views):
    out, models = trained
    record = _run(tiny_cfg, tiny_views, models, out, "a")
    steps = tiny_cfg.refine.steps["dense"]
    assert record["steps"] == steps and [p["steps"] for p in record["curve"]] == checkpoint_steps(tiny_cfg, "dense")
    assert record["curve"][0]["steps"] == 0 and record["curve"][-1]["steps"] == steps
    assert record["curve"][0]["loss"] is None and all(np.isfinite(p["loss"]) for p in record["curve"][1:])
    obj, cost, meta = read_reconstruction(out / "a.npz")
    assert obj.shape == tuple(meta["object_shape"]) and obj.dtype == np.complex64 and len(cost) == steps
    assert "nothing selected" in meta["settings"]["chosen_by"] and meta["split"] == "test"
    # the wall times stay out of the tracked record (byte-stable outputs) and go to the timing file
    saved = (out / "a.json").read_text()
    assert "seconds" not in saved
    timing = json.loads((out / "a-timing.json").read_text())
    assert [p["steps"] for p in timing["curve"]] == [p["steps"] for p in record["curve"]]
    assert all(p["seconds"] >= 0 and p["inference_seconds"] > 0 for p in timing["curve"])
    # a second run writes the very same bytes
    _run(tiny_cfg, tiny_views, models, out, "b")
    assert (out / "a.npz").read_bytes() == (out / "b.npz").read_bytes()
    assert (out / "a.json").read_bytes().replace(b"a.npz", b"") == (out / "b.json").read_bytes().replace(b"b.npz", b"")


def test_without_the_curve_only_the_last_object_is_inferred_and_it_is_the_same(trained, tiny_cfg, tiny_views):
    """refine(curve=False), as the replicates run it: one inference (the last step's), the arm's very object."""
    _, models = trained
    bundle = bundle_path(models, "run1084", 100000, "dense")
    results = {}
    for curve in (True, False):  # a fresh load each time: refine trains the loaded network in place
        _, _, split, loaded = load(tiny_cfg, "run1084", 100000, "dense", tiny_views["dense"], bundle)
        results[curve] = refine(tiny_cfg, 100000, "dense", split, loaded, progress=False, curve=curve)
    assert [p["steps"] for p in results[False][2]] == [tiny_cfg.refine.steps["dense"]]
    assert len(results[True][2]) == len(checkpoint_steps(tiny_cfg, "dense")) > 1
    np.testing.assert_array_equal(results[True][0], results[False][0])
    np.testing.assert_array_equal(results[True][1], results[False][1])


def test_step_zero_is_the_trained_network_as_phase_g_scores_it(trained, tiny_cfg, tiny_views, tiny_iterative, tmp_path):
    """One scoring path: the curve's step 0 (no refinement) is exactly the pinn arm of the comparison, and the
    comparison's pinn_refined arm is the curve's last point."""
    import shutil

    out, models = trained
    record = _run(tiny_cfg, tiny_views, models, out, "c")
    rec = shutil.copytree(tiny_iterative[0], tmp_path / "rec")
    shutil.copy(out / "c.npz", rec / "pinn_refined.npz")
    inferred = tmp_path / "inferred.npz"
    infer_run(tiny_cfg, "run1084", 100000, "dense", tiny_views["dense"], models, inferred, tmp_path / "i.json", progress=False)
    warmstart_run(tiny_cfg, "run1084", 100000, "dense", tiny_views["dense"], inferred, tiny_iterative[1], rec / "ptychi_tuned_curve.npz", rec / "gradient_curve.npz", rec / "pinn_ptychi.npz",
                  rec / "pinn_gradient.npz", tmp_path / "w.json", tmp_path / "w-timing.json", progress=False)
    compared = compare_run(tiny_cfg, "run1084", 100000, "dense", tiny_views["dense"], inferred, rec, tmp_path / "g")
    featured = {arm: compared["scores"][arm]["featured"] for arm in ("pinn", "pinn_refined")}
    assert record["curve"][0]["phase_pearson_r"] == featured["pinn"]["phase"]["pearson_r"]
    assert record["curve"][0]["phase_frc50_resolution_px"] == featured["pinn"]["phase"]["frc50_resolution_px"]
    assert record["curve"][-1]["phase_pearson_r"] == featured["pinn_refined"]["phase"]["pearson_r"]


def test_the_truth_is_never_read_while_refining(trained, tiny_cfg, tiny_views):
    """The same object whatever the test split's truth holds: only its patterns are trained on."""
    _, models = trained
    dose, _, split, loaded = load(tiny_cfg, "run1084", 100000, "dense", tiny_views["dense"], bundle_path(models, "run1084", 100000, "dense"))
    obj, losses, _, _ = refine(tiny_cfg, dose, "dense", split, loaded, progress=False)
    rng = np.random.default_rng(0)
    garbage = (rng.standard_normal(split.truth.shape) + 1j * rng.standard_normal(split.truth.shape)).astype(split.truth.dtype)
    _, _, split2, loaded2 = load(tiny_cfg, "run1084", 100000, "dense", tiny_views["dense"], bundle_path(models, "run1084", 100000, "dense"))
    obj2, losses2, _, _ = refine(tiny_cfg, dose, "dense", dataclasses.replace(split2, truth=garbage), loaded2,
                                 progress=False)
    assert np.array_equal(obj, obj2) and np.array_equal(losses, losses2)
    # and the refinement really trains: the weights moved, and so did the object
    _, _, split3, loaded3 = load(tiny_cfg, "run1084", 100000, "dense", tiny_views["dense"], bundle_path(models, "run1084", 100000, "dense"))
    zero = tiny_cfg.replace(refine=dataclasses.replace(tiny_cfg.refine, checkpoints=(0.0, 1.0)))
    before = [p.detach().clone() for p in loaded3.model.parameters()]
    refine(zero, dose, "dense", split3, loaded3, progress=False)
    assert any(not np.array_equal(a.numpy(), b.detach().numpy()) for a, b in zip(before, loaded3.model.parameters()))


def test_a_network_of_another_view_is_refused_and_nothing_written(trained, tiny_cfg, tiny_views):
    out, models = trained
    with pytest.raises(StudyError, match="view baseline, not of run1084, dose 100000, view dense"):
        _run(tiny_cfg, tiny_views, models, out, "wrong", view="dense", bundle_view="baseline")
    assert not (out / "wrong.npz").exists() and not (out / "wrong.json").exists()


def test_the_baseline_view_refines_its_gridsize_1_network(trained, tiny_cfg, tiny_views):
    out, models = trained
    record = _run(tiny_cfg, tiny_views, models, out, "base", view="baseline")
    assert record["groups"] == record["positions"] and record["steps"] == tiny_cfg.refine.steps["baseline"]
