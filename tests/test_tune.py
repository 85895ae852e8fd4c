"""The fair-study protocol: the tune stage selects on the train split only; the tuned pty-chi arm and the
gradient solver run what it selected; the gradient solver itself (physics, likelihood, coarse-to-fine)."""

from __future__ import annotations

import copy
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


def _rows(search: dict) -> list[dict]:
    return [{"setting": t["setting"], **row} for t in search["trials"] for row in t["rows"]]


def test_the_selection_is_made_on_the_train_split_under_both_protocols(tiny_iterative, tiny_cfg):
    """Both protocols on the train split only: every trial of each search is recorded with both criteria, each
    pick is the best row of its own search by its own criterion, the first trial of both is the configured arm,
    so the calibration pick's score is at least the configured arm's (the search space contains it)."""
    _, tuning, train_only = tiny_iterative
    assert not (train_only / "test.npz").exists()  # the fixture ran the stage without any test file
    record = json.loads(tuning.read_text())
    assert record["split"] == "train" and record["data"]["path"].endswith("train.npz")
    assert set(record["criterion"]) == {"calibration_phase_r", "heldout_nll"}
    assert any("nll" in name for name in record["criterion"])
    t, r = tiny_cfg.tune, tiny_cfg.reconstruct
    held = record["heldout"]
    assert held["positions"] + held["fitted"] == record["positions"] and held["positions"] >= 1
    ptychi = record["ptychi"]
    configured = ptychi["configured"]
    assert (configured["noise_model"], configured["tv_weight"], configured["momentum"], configured["epochs"]) == (
        r.noise_model, 0.0, r.momentum, r.epochs["dense"])
    for protocol, key, best in (("calibration", "selected", max), ("no_calibration", "selected_heldout", min)):
        search = ptychi["searches"][protocol]
        assert len(search["trials"]) == t.ptychi_search.trials
        first = search["trials"][0]
        assert first["setting"] == configured["setting"] and first["state"] == "complete"
        assert [row["epochs"] for row in first["rows"]] == list(t.ptychi_epochs["dense"])
        rows = _rows(search)
        assert all({"phase_r", "heldout_nll", "amplitude_r"} <= set(row) for row in rows)
        criterion = search["criterion"]
        pick = ptychi[key]
        assert pick[criterion] == best(row[criterion] for row in rows)
        for trial in search["trials"]:  # every setting lies in the search space
            assert trial["noise_model"] in t.ptychi_search.noise_models and trial["momentum"] in t.ptychi_search.momentum
            assert trial["tv_weight"] == 0 or t.ptychi_search.tv_weight[0] <= trial["tv_weight"] <= t.ptychi_search.tv_weight[1]
    assert ptychi["selected"]["phase_r"] >= configured["phase_r"]
    assert ptychi["selected_heldout"]["heldout_nll"] <= configured["heldout_nll"]
    steps = record["gradient"]["grid"]
    assert [(r["level"], r["steps"]) for r in steps] == [
        (level, step) for level in tiny_cfg.gradient.levels for step in t.gradient_checkpoints]
    assert record["gradient"]["selected"] == max(steps, key=lambda r: r["phase_r"])
    assert record["gradient"]["selected_heldout"] == min(steps, key=lambda r: r["heldout_nll"])
    assert -1 <= record["floor_phase_r"] < record["gradient"]["selected"]["phase_r"]
    for solver in ("ptychi", "gradient"):
        same = all(record[solver]["selected"][f] == record[solver]["selected_heldout"][f]
                   for f in (("noise_model", "tv_weight", "momentum", "epochs") if solver == "ptychi" else ("level", "steps")))
        assert record["agree"][solver] == same
    from ptychostudy import tune_figure  # the figure is its own stage, drawn from the record

    assert tune_figure.main(["--report", str(tuning), "--figure", str(tuning.parent / "tuning.png")]) == 0
    assert (tuning.parent / "tuning.png").stat().st_size > 10_000


def test_the_heldout_positions_are_never_fitted_and_their_nll_prefers_the_truth(tiny_cfg, tiny_views):
    """The held-out draw is fixed and disjoint from the fit; the criterion needs no truth, yet it scores the
    true object better than a blank one through either forward model."""
    from ptychostudy import tune

    split = Split.read(tiny_views["dense"] / "train.npz", 1, require_groups=False)
    fit, held, index = tune.holdout(split, 0.2, 5)
    again = tune.holdout(split, 0.2, 5)[2]
    assert np.array_equal(index, again) and len(index) == round(0.2 * split.patterns)
    assert fit.patterns + held.patterns == split.patterns
    fitted = {tuple(p) for p in fit.positions}
    assert not any(tuple(p) in fitted for p in held.positions)
    assert torch.equal(held.amplitude, split.amplitude[torch.from_numpy(index)])
    for model in ("physics", "ptychi"):
        truth = tune.heldout_nll(held, split.truth, model)
        blank = tune.heldout_nll(held, np.ones_like(split.truth), model)
        assert truth < blank, (model, truth, blank)


def test_the_search_space_must_hold_the_configured_setting(params):
    from ptychostudy.config import config_from_dict
    from ptychostudy.params import ParamsError

    bad = copy.deepcopy(params)
    bad["tune"]["ptychi_search"]["momentum"] = [0.5]
    with pytest.raises(ParamsError, match="must hold reconstruct.momentum"):
        config_from_dict(bad)
    bad = copy.deepcopy(params)
    bad["tune"]["ptychi_epochs"]["dense"] = [2, 4]
    with pytest.raises(ParamsError, match="never stops short of the configured arm"):
        config_from_dict(bad)


def test_the_tune_stage_depends_on_no_test_file():
    """What DVC knows: every tune stage reads the view's train file and summary, never the view folder."""
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["tune"]
    data = [d for d in stage["deps"] if d.startswith("data/")]
    assert data == ["data/views/${item.object}/dose_${item.dose}/${item.view}/train.npz",
                    "data/views/${item.object}/dose_${item.dose}/${item.view}/view.json"]
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
    _, cost, meta = read_reconstruction(rec / "ptychi_heldout.npz")
    chosen = record["ptychi"]["selected_heldout"]
    assert meta["arm"] == "ptychi_heldout" and meta["epochs"] == chosen["epochs"] == len(cost)
    for key in ("noise_model", "tv_weight", "momentum"):
        assert meta["settings"][key] == chosen[key]
    for arm, key in (("gradient", "selected"), ("gradient_heldout", "selected_heldout")):
        _, cost, meta = read_reconstruction(rec / f"{arm}.npz")
        stop = record["gradient"][key]
        assert meta["arm"] == arm
        assert meta["plan"][-1] == [stop["level"], stop["steps"]] and len(cost) == stop["total_steps"]


def test_one_run_serves_both_arms_and_equals_separate_runs(tiny_cfg, tiny_views, tiny_iterative, tmp_path):
    """Where both protocols picked one pty-chi setting, the stage runs it once; the earlier stop's object is the
    one a run stopping there gives. The same for the gradient solver's two stops (always one run)."""
    from ptychostudy import gradient as gradient_stage
    from ptychostudy import reconstruct

    rec, tuning, _ = tiny_iterative
    record = json.loads(tuning.read_text())
    view = tiny_views["dense"]
    reconstruct.run(tiny_cfg, "run1084", 100000, "dense", view, tmp_path / "alone.npz", tmp_path / "alone.json", tmp_path / "t.json",
                    arm="ptychi_tuned", tuning=tuning, progress=False)
    alone, _, _ = read_reconstruction(tmp_path / "alone.npz")
    assert np.array_equal(alone, read_reconstruction(rec / "ptychi_tuned.npz")[0])
    if record["agree"]["ptychi"]:
        assert "shared_run" in json.loads((rec.parent / "ptychi_heldout.json").read_text())
    gradient_stage.run(tiny_cfg, "run1084", 100000, "dense", view, tuning, tmp_path / "g.npz", tmp_path / "g.json", tmp_path / "gt.json",
                       progress=False)
    assert np.array_equal(read_reconstruction(tmp_path / "g.npz")[0], read_reconstruction(rec / "gradient.npz")[0])
    with pytest.raises(StudyError, match="go together"):
        gradient_stage.run(tiny_cfg, "run1084", 100000, "dense", view, tuning, tmp_path / "g.npz", tmp_path / "g.json",
                           tmp_path / "gt.json", heldout_out=tmp_path / "h.npz", progress=False)


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
