"""The fair-study protocol: the tune stage selects on the train split only; the tuned pty-chi arm and the
gradient solver run what it selected; the gradient solver itself (physics, likelihood, coarse-to-fine)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from conftest import ROOT
from ptychostudy import StudyError, physics
from ptychostudy import gradient_solver as gradient
from ptychostudy.dataset import Split
from ptychostudy.io import write_json
from ptychostudy.stored import read_reconstruction
from ptychostudy.metrics import regions, score_arm
from ptychostudy.ptychi_solver import read_selection


def test_the_selection_is_made_on_the_train_split_and_is_the_best_score(tiny_iterative, tiny_cfg):
    _, tuning, train_only = tiny_iterative
    assert not (train_only / "test.npz").exists()  # the fixture ran the stage without any test file
    record = json.loads(tuning.read_text())
    assert record["split"] == "train" and record["data"]["path"].endswith("train.npz")
    t = tiny_cfg.tune
    grid = record["ptychi"]["grid"]
    assert len(grid) == len(t.ptychi_grid) * len(t.ptychi_epochs["dense"])
    assert {(r["noise_model"], r["tv_weight"], r["momentum"]) for r in grid} == {
        (s.noise_model, s.tv_weight, s.momentum) for s in t.ptychi_grid}
    assert record["ptychi"]["selected"] == max(grid, key=lambda r: r["phase_r"])
    steps = record["gradient"]["grid"]
    assert [(r["level"], r["steps"]) for r in steps] == [
        (level, step) for level in tiny_cfg.gradient.levels for step in t.gradient_checkpoints]
    assert record["gradient"]["selected"] == max(steps, key=lambda r: r["phase_r"])
    assert -1 <= record["floor_phase_r"] < record["gradient"]["selected"]["phase_r"]
    from ptychostudy import tune_figure  # the figure is its own stage, drawn from the record

    assert tune_figure.main(["--report", str(tuning), "--figure", str(tuning.parent / "tuning.png")]) == 0
    assert (tuning.parent / "tuning.png").stat().st_size > 10_000


def test_the_tune_stage_depends_on_no_test_file():
    """What DVC knows: every tune stage reads the view's train file and summary, never the view folder."""
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["tune"]
    data = [d for d in stage["deps"] if d.startswith("data/")]
    assert data == ["data/views/dose_${item.dose}/${item.view}/train.npz", "data/views/dose_${item.dose}/${item.view}/view.json"]
    assert not any("test" in d for d in stage["deps"])


def test_the_tuned_arms_run_what_was_selected(tiny_iterative):
    rec, tuning, _ = tiny_iterative
    record = json.loads(tuning.read_text())
    _, cost, meta = read_reconstruction(rec / "ptychi_tuned.npz")
    chosen = record["ptychi"]["selected"]
    assert meta["arm"] == "ptychi_tuned" and meta["split"] == "test"
    assert meta["epochs"] == chosen["epochs"] == len(cost)
    for key in ("noise_model", "tv_weight", "momentum"):
        assert meta["settings"][key] == chosen[key]
    _, cost, meta = read_reconstruction(rec / "gradient.npz")
    stop = record["gradient"]["selected"]
    assert meta["plan"][-1] == [stop["level"], stop["steps"]] and len(cost) == stop["total_steps"]


def test_a_selection_for_another_cell_or_split_is_refused(tiny_iterative, tmp_path):
    _, tuning, _ = tiny_iterative
    record = json.loads(tuning.read_text())
    with pytest.raises(StudyError, match="not of dose 1000"):
        read_selection(tuning, 1000, "dense", "ptychi")
    write_json(tmp_path / "test.json", {**record, "split": "test"})
    with pytest.raises(StudyError, match="train split"):
        read_selection(tmp_path / "test.json", 100000, "dense", "ptychi")
    with pytest.raises(StudyError, match="train-split selection"):
        gradient.read_selection(tmp_path / "test.json", 100000, "dense")
    with pytest.raises(StudyError, match="run the tune stage first"):
        read_selection(tmp_path / "missing.json", 100000, "dense", "ptychi")


# ---------------------------------------------------------------------------------------
# the gradient solver


def _split(folder):
    return Split.read(folder / "test.npz", 1, require_groups=False)


def test_the_likelihood_prefers_the_truth(tiny_views):
    """The solver's objective is the study's forward model: the true object explains the counts better
    than a blank one, and the expected counts are physics' own."""
    split = _split(tiny_views["baseline"])
    size = split.probe.shape[-1]
    pos = torch.from_numpy(split.positions)
    counts = split.amplitude.double().pow(2).float()

    def nll(obj):
        patches = physics.extract_patches(torch.from_numpy(obj), physics.top_left(pos[:, 0], size).float(),
                                          physics.top_left(pos[:, 1], size).float(), size)
        return float(gradient.poisson_nll(physics.expected_intensity(split.probe, patches, split.intensity_scale), counts))

    assert nll(split.truth.astype(np.complex64)) < nll(np.ones_like(split.truth, dtype=np.complex64)) - 0.1


def test_stopping_early_gives_the_checkpoint_the_selection_scored(tiny_cfg, tiny_views):
    """A run stopped at (level, step) is the checkpoint of the full run at that point: what the tune stage
    scored is what the gradient stage runs."""
    split = _split(tiny_views["baseline"])
    g = tiny_cfg.gradient
    seen = {}
    full, cost = gradient.solve(split, g, gradient.schedule(g), 3, progress=False, checkpoints=(3,),
                                on_checkpoint=lambda level, step, obj: seen.setdefault((level, step), obj))
    assert sorted(seen) == sorted((level, 3) for level in g.levels)
    assert len(cost) == len(g.levels) * g.steps_per_level
    stop = (g.levels[-1], 3)
    plan = gradient.schedule(g, stop)
    assert plan == [(g.levels[0], g.steps_per_level), stop]
    stopped, _ = gradient.solve(split, g, plan, 3, progress=False)
    assert np.array_equal(stopped, seen[stop])
    with pytest.raises(StudyError, match="not in gradient.levels"):
        gradient.schedule(g, (3, 1))


def test_the_gradient_solver_reconstructs_and_is_deterministic(tiny_cfg, tiny_views):
    split = _split(tiny_views["baseline"])
    g = tiny_cfg.gradient
    gradient.setup(g.threads)
    a, cost = gradient.solve(split, g, gradient.schedule(g), 5, progress=False)
    b, _ = gradient.solve(split, g, gradient.schedule(g), 5, progress=False)
    assert np.array_equal(a, b)
    assert cost[-1] < cost[0]
    masks = regions(split, tiny_cfg.compare.scanned_threshold)
    phase_r = score_arm(a, split.truth, masks, tiny_cfg.compare, full=False).scores["featured"]["phase"]["pearson_r"]
    blank = score_arm(np.ones_like(a), split.truth, masks, tiny_cfg.compare, full=False).scores["featured"]["phase"]["pearson_r"]
    assert phase_r > blank + 0.1, (phase_r, blank)  # 5 steps of a model that is not the simulator's (0.16 measured)
