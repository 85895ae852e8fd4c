"""The summary's spread and the level below which it calls no difference (computed, never typed)."""

from __future__ import annotations

import json

import pytest

from ptychostudy import summary
from ptychostudy.config import config_from_dict


def _table(values: dict) -> list[dict]:
    return [{"dose": 1000, "view": "dense", "model": arm, "metric": metric, "part": "featured", "value": v}
            for arm, by_metric in values.items() for metric, v in by_metric.items()]


OWN = {"pinn": {"phase_pearson_r": 0.30, "phase_frc50_resolution_px": 30.0, "amplitude_pearson_r": 0.6},
       "gradient": {"phase_pearson_r": 0.95, "phase_frc50_resolution_px": 4.0, "amplitude_pearson_r": 0.8}}


@pytest.fixture
def reports(tmp_path, params):
    params["replicate"].update(doses=[1000], views=["dense"], seeds=2)
    cfg = config_from_dict(params)
    rows = {"pinn": [0.36, 0.27], "gradient": [0.951, 0.949]}
    record = {"dose": 1000, "view": "dense", "skipped": False, "arms": {
        arm: [{"replicate": k + 1, "phase_pearson_r": r, "phase_frc50_resolution_px": 10.0 + k, "amplitude_pearson_r": 0.5}
              for k, r in enumerate(values)] for arm, values in rows.items()}}
    (tmp_path / "dose_1000-dense.json").write_text(json.dumps(record))
    return cfg, tmp_path


def test_the_spread_puts_the_pipeline_run_first_then_each_replicate(reports):
    cfg, folder = reports
    spread = summary._spread(cfg, folder, _table(OWN))
    assert spread[(1000, "dense", "pinn")]["phase_pearson_r"] == [0.30, 0.36, 0.27]
    assert spread[(1000, "dense", "gradient")]["phase_frc50_resolution_px"] == [4.0, 10.0, 11.0]
    assert summary._stats([0.30, 0.36, 0.27])["sd"] == pytest.approx(0.0458, abs=1e-4)
    assert summary._stats([0.30, 0.36, 0.27])["range"] == pytest.approx(0.09)


def test_the_level_is_the_measured_spread_of_both_arms_when_it_exceeds_the_cross_cpu_move(reports):
    cfg, folder = reports
    called, why = summary.level(summary._spread(cfg, folder, _table(OWN)))
    assert called == pytest.approx((0.36 - 0.27) + (0.951 - 0.949))
    assert "pinn" in why and "gradient" in why and "3 runs" in why


def test_without_replicates_the_level_is_the_cross_cpu_move_and_says_so():
    called, why = summary.level({})
    assert called == summary.CROSS_CPU and "not measured" in why


def test_a_small_spread_never_lowers_the_level_below_the_cross_cpu_move(reports):
    cfg, folder = reports
    record = json.loads((folder / "dose_1000-dense.json").read_text())
    for arm in record["arms"].values():
        for row in arm:
            row["phase_pearson_r"] = 0.30 if arm is record["arms"]["pinn"] else 0.95
    (folder / "dose_1000-dense.json").write_text(json.dumps(record))
    assert summary.level(summary._spread(cfg, folder, _table(OWN)))[0] == summary.CROSS_CPU
