"""The network-started solvers (warmstart.py) on the tiny dense view at dose 1e5: started blank they are Phase F's
tuned arms exactly; started from an object they begin where it is; the curves and the arms' files agree."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ptychostudy import StudyError
from ptychostudy.dataset import Split
from ptychostudy.gradient_solver import initial_fields
from ptychostudy.layout import view_file
from ptychostudy.npz import json_array, write_npz
from ptychostudy.stored import read_reconstruction
from ptychostudy.warmstart import MIN_MODULUS, marks, run, starting_object


def _inferred(path, obj, name="pinn", cell=("run1084", 100000, "dense")):
    """An infer-stage file holding ``obj`` as the network's object (the mechanics need no trained network)."""
    record = {"object": cell[0], "dose": cell[1], "view": cell[2], "split": "test", "skipped": False, "arms": [name]}
    write_npz(path, {name: np.asarray(obj, dtype=np.complex64), "_metadata": json_array(record)})
    return path


@pytest.fixture(scope="module")
def started(tiny_cfg, tiny_views, tiny_iterative, tmp_path_factory):
    """The stage run with a 'network' object that is the truth blurred and shifted in phase (a good, imperfect start)."""
    out = tmp_path_factory.mktemp("warmstart")
    test = Split.read(view_file(tiny_views["dense"], "test"), 1)
    truth = test.truth.numpy() if hasattr(test.truth, "numpy") else np.asarray(test.truth)
    kernel = np.ones(3) / 3
    smooth = np.apply_along_axis(lambda r: np.convolve(r, kernel, mode="same"), 1, truth)
    network = (smooth * np.exp(0.7j)).astype(np.complex64)
    network[:5] = 0  # a stretch no patch reached
    phase_f, tuning, _ = tiny_iterative
    inferred = _inferred(out / "inferred.npz", network)
    record = run(tiny_cfg, "run1084", 100000, "dense", tiny_views["dense"], inferred, tuning, phase_f / "ptychi_tuned_curve.npz", phase_f / "gradient_curve.npz",
                 out / "pinn_ptychi.npz", out / "pinn_gradient.npz", out / "warmstart.json", out / "timing.json", progress=False)
    return out, record, network, truth


def test_curves_start_at_the_start_blank_ends_at_phase_f_arm_network_at_the_new_arm(started, tiny_cfg, tiny_views, tiny_iterative):
    from ptychostudy.metrics import regions, score_arm

    out, record, network, truth = started
    test = Split.read(view_file(tiny_views["dense"], "test"), 1)
    masks = regions(test, tiny_cfg.compare.scanned_threshold)

    def r(obj):
        return score_arm(obj, test.truth, masks, tiny_cfg.compare, ("featured",)).scores["featured"]["phase"]["pearson_r"]

    phase_f, _, _ = tiny_iterative
    for arm, twin in (("pinn_ptychi", "ptychi_tuned"), ("pinn_gradient", "gradient")):
        curves = record["records"][arm]["curve"]
        assert curves["network"][0]["phase_pearson_r"] == pytest.approx(r(starting_object(network)), abs=1e-9)
        assert curves["blank"][0]["phase_pearson_r"] == pytest.approx(r(np.ones_like(network)), abs=1e-9)
        twin_obj, _, _ = read_reconstruction(phase_f / f"{twin}.npz")
        assert curves["blank"][-1]["phase_pearson_r"] == pytest.approx(r(twin_obj), abs=1e-12)  # blank = Phase F's arm
        arm_obj, cost, meta = read_reconstruction(out / f"{arm}.npz")
        assert curves["network"][-1]["phase_pearson_r"] == pytest.approx(r(arm_obj), abs=1e-12)  # the arm = the last point
        assert meta["arm"] == arm and len(cost) > 0
        # a good start begins well above blank
        assert curves["network"][0]["phase_pearson_r"] > curves["blank"][0]["phase_pearson_r"] + 0.3
    ptychi = record["records"]["pinn_ptychi"]
    assert [p["epochs"] for p in ptychi["curve"]["network"]] == marks(ptychi["settings"]["epochs"], tiny_cfg.warmstart.checkpoints)
    gradient = record["records"]["pinn_gradient"]["settings"]["plans"]
    assert gradient["network"] == gradient["blank"][-1:]  # the network stands in for the coarser levels
    assert [p["epochs"] for p in ptychi["curve"]["blank"]] == marks(ptychi["settings"]["epochs"], tiny_cfg.warmstart.checkpoints)
    timing = json.loads((out / "timing.json").read_text())
    for arm in ("pinn_ptychi", "pinn_gradient"):
        seconds = [p["seconds"] for p in timing["curves"][arm]["network"]]
        assert seconds[0] >= 0 and seconds == sorted(seconds)
        # both solvers from blank ran in Phase F: no seconds here, Phase F's timing files have them at the same counts
        assert all(p["seconds"] is None for p in timing["curves"][arm]["blank"])
    steps = [p["steps"] for p in record["records"]["pinn_gradient"]["curve"]["blank"]]
    assert steps[0] == 0 and steps[-1] == sum(n for _, n in gradient["blank"]) and steps == sorted(set(steps))
    tracked = (out / "warmstart.json").read_text()
    assert '"seconds"' not in tracked  # wall times stay out of the tracked record (dvc.lock stability)


def test_the_stage_is_deterministic(started, tiny_cfg, tiny_views, tiny_iterative, tmp_path):
    out, _, network, _ = started
    phase_f, tuning, _ = tiny_iterative
    run(tiny_cfg, "run1084", 100000, "dense", tiny_views["dense"], _inferred(tmp_path / "i.npz", network), tuning,
        phase_f / "ptychi_tuned_curve.npz", phase_f / "gradient_curve.npz", tmp_path / "p.npz", tmp_path / "g.npz", tmp_path / "w.json", tmp_path / "t.json",
        progress=False)
    for a, b in (("pinn_ptychi.npz", "p.npz"), ("pinn_gradient.npz", "g.npz")):  # the records name other paths
        (obj_a, cost_a, _), (obj_b, cost_b, _) = read_reconstruction(out / a), read_reconstruction(tmp_path / b)
        assert np.array_equal(obj_a, obj_b) and np.array_equal(cost_a, cost_b)
    first = json.loads((out / "warmstart.json").read_text())
    again = json.loads((tmp_path / "w.json").read_text())
    assert first["arms"] == again["arms"]


def test_starting_object_fills_what_no_patch_reached_at_the_mean_phase():
    canvas = np.zeros((6, 6), dtype=np.complex64)
    canvas[2:, 2:] = 0.5 * np.exp(1.2j)
    canvas[5, 5] = 1e-6 * np.exp(1.2j)
    start = starting_object(canvas)
    assert np.allclose(start[:2], np.exp(1.2j), atol=1e-6)  # unit modulus at the covered part's phase
    assert np.allclose(start[2:4, 2:], canvas[2:4, 2:])
    assert abs(start[5, 5]) == pytest.approx(MIN_MODULUS) and np.angle(start[5, 5]) == pytest.approx(1.2, abs=1e-5)
    with pytest.raises(StudyError, match="zero everywhere"):
        starting_object(np.zeros((4, 4), dtype=np.complex64))


def test_initial_fields_average_the_complex_object_not_its_phase():
    obj = np.ones((4, 4), dtype=np.complex64)
    obj[:, :2] = np.exp(1j * (np.pi - 0.1))
    obj[:, 2:] = np.exp(1j * (-np.pi + 0.1))  # across the wrap: the mean phase is π, not 0
    log_amplitude, phase = initial_fields(obj, (1, 1))
    assert abs(abs(float(phase[0, 0])) - np.pi) < 1e-5
    assert float(log_amplitude[0, 0]) == pytest.approx(np.log(np.cos(0.1)), abs=1e-5)
    same, same_phase = initial_fields(obj, (4, 4))
    assert np.allclose(same.numpy(), 0, atol=1e-6) and np.allclose(same_phase.numpy(), np.angle(obj), atol=1e-6)
    with pytest.raises(StudyError, match="nowhere zero"):
        initial_fields(np.zeros((2, 2), dtype=np.complex64), (2, 2))


def test_an_infer_file_without_the_views_network_is_refused(tiny_cfg, tiny_views, tiny_iterative, tmp_path):
    phase_f, tuning, _ = tiny_iterative
    inferred = _inferred(tmp_path / "i.npz", np.ones((4, 4)), name="pinn_gs1")
    with pytest.raises(StudyError, match="network 'pinn'"):
        run(tiny_cfg, "run1084", 100000, "dense", tiny_views["dense"], inferred, tuning, phase_f / "ptychi_tuned_curve.npz", phase_f / "gradient_curve.npz",
            tmp_path / "p.npz", tmp_path / "g.npz", tmp_path / "w.json", tmp_path / "t.json", progress=False)
    assert not (tmp_path / "p.npz").exists()  # nothing written


def test_phase_f_keeps_the_blank_start_on_the_way_and_a_curve_of_other_epochs_is_refused(tiny_cfg, tiny_views, tiny_iterative,
                                                                                        tmp_path):
    """reconstruct_tuned's curve file: ptychi_tuned's objects at warmstart.checkpoints of its epochs, the last its own
    object exactly (one run: the arm is never run twice); a curve for other epochs (changed checkpoints, or another
    selection) is refused before anything runs."""
    import dataclasses

    from ptychostudy.stored import read_curve, write_curve

    phase_f, tuning, _ = tiny_iterative
    epochs, objects, meta = read_curve(phase_f / "ptychi_tuned_curve.npz")
    tuned, _, tuned_meta = read_reconstruction(phase_f / "ptychi_tuned.npz")
    assert list(epochs) == [m for m in marks(tuned_meta["epochs"], tiny_cfg.warmstart.checkpoints) if m > 0]
    assert np.array_equal(objects[-1], tuned)
    assert meta["arm"] == "ptychi_tuned" and meta["epochs"] == tuned_meta["epochs"]
    stale = tmp_path / "stale.npz"
    write_curve(stale, epochs[:-1], objects[:-1], meta)
    inferred = _inferred(tmp_path / "i.npz", np.ones(objects.shape[1:]))
    with pytest.raises(StudyError, match="rerun its reconstruct_tuned stage"):
        run(tiny_cfg, "run1084", 100000, "dense", tiny_views["dense"], inferred, tuning, stale, phase_f / "gradient_curve.npz", tmp_path / "p.npz",
            tmp_path / "g.npz", tmp_path / "w.json", tmp_path / "t.json", progress=False)
    assert not (tmp_path / "p.npz").exists()
    other = tiny_cfg.replace(warmstart=dataclasses.replace(tiny_cfg.warmstart, checkpoints=(0.0, 0.5, 1.0)))
    with pytest.raises(StudyError, match="warmstart.checkpoints"):
        run(other, "run1084", 100000, "dense", tiny_views["dense"], inferred, tuning, phase_f / "ptychi_tuned_curve.npz", phase_f / "gradient_curve.npz",
            tmp_path / "p.npz", tmp_path / "g.npz", tmp_path / "w.json", tmp_path / "t.json", progress=False)


def test_only_ptychi_tuned_keeps_a_curve(tiny_cfg, tiny_views, tmp_path):
    from ptychostudy import reconstruct

    with pytest.raises(StudyError, match="--curve-out goes with --arm ptychi_tuned"):
        reconstruct.run(tiny_cfg, "run1084", 100000, "dense", tiny_views["dense"], tmp_path / "p.npz", tmp_path / "p.json",
                        tmp_path / "t.json", arm="ptychi", curve_out=tmp_path / "c.npz", progress=False)
    assert not (tmp_path / "p.npz").exists()


def test_marks_are_whole_counts_from_the_start_to_the_end():
    assert marks(10, (0.0, 0.1, 0.25, 0.5, 1.0)) == [0, 1, 2, 5, 10]
    assert marks(1, (0.0, 0.1, 0.25, 0.5, 1.0)) == [0, 1]


def test_phase_f_keeps_the_gradient_arms_run_on_the_way_as_a_run_of_its_own_plan_gives(tiny_cfg, tiny_views, tiny_iterative,
                                                                                       tmp_path):
    """The gradient stage's curve file: the arm gradient's objects at curve_points of its tuned plan, equal to a
    blank run of that plan alone scored there (what the warmstart stage ran before: the stage stops at the later of
    the two protocols' stops, and the earlier objects are the same); a curve of another plan is refused."""
    from ptychostudy import gradient_solver
    from ptychostudy.io import derive_seed
    from ptychostudy.stored import read_curve, write_curve

    phase_f, tuning, _ = tiny_iterative
    g = tiny_cfg.gradient
    stop = gradient_solver.read_selection(tuning, 100000, "dense")
    plan = gradient_solver.schedule(g, stop)
    points = gradient_solver.curve_points(plan, [m for m in marks(stop[1], tiny_cfg.warmstart.checkpoints) if m > 0])
    steps, objects, meta = read_curve(phase_f / "gradient_curve.npz")
    assert list(steps) == [total for _, _, total in points] and meta["plan"] == [list(p) for p in plan]
    assert steps[-1] == sum(n for _, n in plan) and len(set(steps)) == len(steps)
    arm, _, _ = read_reconstruction(phase_f / "gradient.npz")
    assert np.array_equal(objects[-1], arm)  # the last one is the arm's object exactly
    test = Split.read(view_file(tiny_views["dense"], "test"), 1)
    alone = {}
    gradient_solver.setup(tiny_cfg.warmstart.threads)
    gradient_solver.solve(test, g, plan, derive_seed(g.seed, 100000, "dense"), progress=False,
                          checkpoints=sorted({s for _, s, _ in points}),
                          on_checkpoint=lambda level, step, o: alone.setdefault((level, step), o))
    for (level, step, _), kept in zip(points, objects):
        assert np.array_equal(alone[level, step], kept), (level, step)
    stale = tmp_path / "stale.npz"
    write_curve(stale, steps, objects, {**meta, "plan": [[plan[0][0], 1]]})
    inferred = _inferred(tmp_path / "i.npz", np.ones(objects.shape[1:]))
    with pytest.raises(StudyError, match="rerun its gradient stage"):
        run(tiny_cfg, "run1084", 100000, "dense", tiny_views["dense"], inferred, tuning, phase_f / "ptychi_tuned_curve.npz",
            stale, tmp_path / "p.npz", tmp_path / "g.npz", tmp_path / "w.json", tmp_path / "t.json", progress=False)
    assert not (tmp_path / "p.npz").exists()


def test_curve_points_are_each_levels_end_and_the_marks_within_it():
    from ptychostudy.gradient_solver import curve_points

    assert curve_points([(8, 100), (4, 100), (2, 40)], [4, 10, 20, 40]) == [
        (8, 4, 4), (8, 10, 10), (8, 20, 20), (8, 40, 40), (8, 100, 100),
        (4, 4, 104), (4, 10, 110), (4, 20, 120), (4, 40, 140), (4, 100, 200),
        (2, 4, 204), (2, 10, 210), (2, 20, 220), (2, 40, 240)]
    assert curve_points([(2, 40)], [4, 10]) == [(2, 4, 4), (2, 10, 10), (2, 40, 40)]
