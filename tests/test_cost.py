"""Time to solution (cost.py): the break-even rule on a hand-made cell whose numbers are known."""

from __future__ import annotations

import json
import math

import pytest

from conftest import ROOT
from ptychostudy import cost

OBJ, TAG = "run1084", "dose_1000-dense"


def _write(path, record):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))


def _scores(**r):
    return {arm: {"featured": {"phase": {"pearson_r": v}}} for arm, v in r.items()}


@pytest.fixture()
def workspace(tmp_path):
    compare, reconstruct, timing = tmp_path / "compare", tmp_path / "reconstruct", tmp_path / "timing"
    _write(compare / OBJ / TAG / "comparison.json", {"skipped": False, "scores": _scores(
        pinn=0.80, pinn_refined=0.88, ptychi_tuned=0.90, gradient=0.85, pinn_ptychi=0.93, pinn_gradient=0.86)})
    curve = {"pinn_ptychi": {"curve": {"network": [{"epochs": 0, "phase_pearson_r": 0.8},
                                                   {"epochs": 10, "phase_pearson_r": 0.91},
                                                   {"epochs": 20, "phase_pearson_r": 0.93}],
                                       "blank": [{"epochs": 0, "phase_pearson_r": 0.0},
                                                 {"epochs": 20, "phase_pearson_r": 0.90}]}},
             "pinn_gradient": {"curve": {"network": [{"level": 1, "steps": 0, "phase_pearson_r": 0.8},
                                                     {"level": 1, "steps": 60, "phase_pearson_r": 0.84}],
                                         "blank": [{"level": 4, "steps": 0, "phase_pearson_r": 0.0},
                                                   {"level": 1, "steps": 120, "phase_pearson_r": 0.85}]}}}
    _write(reconstruct / "warmstart" / OBJ / f"{TAG}.json", {"network": "pinn", "arms": curve})
    stem = f"{OBJ}-{TAG}"
    _write(timing / f"train-{stem}.json", {"train_seconds": 500.0, "threads": 2})           # 1000 core-s
    _write(timing / f"tune-{stem}.json", {"tune_seconds": 200.0, "threads": 1})             # 200
    _write(timing / f"infer-{stem}.json", {"inference_seconds": {"pinn": 2.0}, "threads": 1})
    _write(timing / f"refine-{stem}.json", {"refine_seconds": 20.0, "threads": 2})          # 40
    _write(timing / f"reconstruct-ptychi_tuned-{stem}.json", {"reconstruct_seconds": {"ptychi_tuned": 30.0}, "threads": 1})
    _write(timing / f"gradient-{stem}.json", {"reconstruct_seconds": {"gradient": 10.0}, "threads": 1})
    _write(timing / f"warmstart-{stem}.json", {"threads": 1, "curves": {
        "pinn_ptychi": {"network": [{"epochs": 0, "seconds": 0.0}, {"epochs": 10, "seconds": 6.0},
                                    {"epochs": 20, "seconds": 12.0}]},
        "pinn_gradient": {"network": [{"level": 1, "steps": 0, "seconds": 0.0}, {"level": 1, "steps": 60, "seconds": 5.0}]}}})
    return compare, reconstruct, timing


def test_break_even_follows_the_rule(workspace):
    c = cost.cell(*workspace, OBJ, TAG)
    ptychi = c["references"]["ptychi_tuned"]
    assert ptychi["per_scan_core_s"] == 30.0 and ptychi["phase_r"] == 0.90
    # the bare network and the refined one are below pty-chi's quality: never
    assert ptychi["paths"]["network"]["break_even_scans"].startswith("never: phase r 0.800 < 0.900")
    assert ptychi["paths"]["network+refinement"]["break_even_scans"].startswith("never")
    # network-started pty-chi reaches 0.90 at 10 epochs: 2 + 6 core-s a scan against 30; one-time the training
    solver = ptychi["paths"]["network+solver"]
    assert solver["per_scan_core_s"] == 8.0 and solver["reached_at"] == {"epochs": 10}
    assert solver["break_even_scans"] == math.ceil(1000 / (30 - 8)) == ptychi["break_even_scans"]
    gradient = c["references"]["gradient"]
    # against the gradient arm (0.85) the refined network is at equal quality: per scan 2 + 40, more than 10: never
    assert gradient["paths"]["network+refinement"]["break_even_scans"] == "never: 42.0 core-s per scan against 10.0"
    # the network-started gradient solver never reaches 0.85 on its curve
    assert gradient["paths"]["network+solver"]["break_even_scans"].startswith("never: the network-started pinn_gradient")
    assert gradient["break_even_scans"].startswith("never")


def test_one_time_cost_net_of_the_search_and_the_smallest_break_even_wins(workspace):
    compare, reconstruct, timing = workspace
    _write(compare / OBJ / TAG / "comparison.json", {"skipped": False, "scores": _scores(
        pinn=0.95, pinn_refined=0.96, ptychi_tuned=0.90, gradient=0.85, pinn_ptychi=0.93, pinn_gradient=0.86)})
    c = cost.cell(compare, reconstruct, timing, OBJ, TAG)
    ptychi = c["references"]["ptychi_tuned"]
    # the network alone: one-time training less pty-chi's search (1000 - 200), 2 core-s a scan against 30
    assert ptychi["paths"]["network"]["break_even_scans"] == math.ceil(800 / 28)
    assert ptychi["break_even_scans"] == min(math.ceil(800 / 28), math.ceil(1000 / 22))


def test_a_network_start_that_needs_the_whole_run_saves_nothing(workspace):
    """Reaching the reference's r only at the blank run's last epoch is the reference's whole work: the path costs
    the inference plus the reference's own seconds (its warmstart run's 12 s against Phase F's 30 s is noise)."""
    compare, reconstruct, timing = workspace
    _write(compare / OBJ / TAG / "comparison.json", {"skipped": False, "scores": _scores(
        pinn=0.80, pinn_refined=0.88, ptychi_tuned=0.925, gradient=0.85, pinn_ptychi=0.93, pinn_gradient=0.86)})
    solver = cost.cell(compare, reconstruct, timing, OBJ, TAG)["references"]["ptychi_tuned"]["paths"]["network+solver"]
    assert solver["reached_at"] == {"epochs": 20} and solver["same_work_as_reference"]
    assert solver["per_scan_core_s"] == 2.0 + 30.0 and solver["break_even_scans"] == "never: 32.0 core-s per scan against 30.0"


def test_the_timing_files_it_reads_are_the_ones_the_stages_write():
    """The reference arms' timing files by the names dvc.yaml gives them (a wrong prefix left pty-chi out unseen)."""
    import yaml

    commands = " ".join(str(s.get("cmd", "")) for s in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].values())
    for prefix, _ in cost.REFERENCES.values():
        assert f"reports/timing/{prefix}-${{item.object}}-dose_${{item.dose}}-${{item.view}}.json" in commands


def test_cells_not_run_here_or_skipped_say_so(workspace, tmp_path):
    compare, reconstruct, timing = workspace
    (timing / f"train-{OBJ}-{TAG}.json").unlink()
    assert "missing" in cost.cell(compare, reconstruct, timing, OBJ, TAG)
    _write(compare / OBJ / TAG / "comparison.json", {"skipped": True})
    assert cost.cell(compare, reconstruct, timing, OBJ, TAG) is None
    assert cost.cell(compare, reconstruct, timing, OBJ, "dose_10000-dense") is None


def test_the_timing_summary_rows(workspace):
    from types import SimpleNamespace

    study = SimpleNamespace(doses=(1000,), views=("dense",), runs=lambda obj, dose, view: True)
    rows = cost.lines(study, OBJ, *workspace)
    body = [r for r in rows if r.startswith("| 1000 |")]
    assert len(body) == 2 and "ptychi_tuned (0.900, 30.0)" in body[0] and body[0].endswith(f"{math.ceil(1000 / 22)} |")
