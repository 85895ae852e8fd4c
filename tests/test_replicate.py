"""The seed-to-seed spread: every arm rerun with other seeds, trained and scored exactly as Phases E-G do."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from ptychostudy import replicate, train
from ptychostudy.bundle import load_bundle
from ptychostudy.dataset import Split
from ptychostudy.inference import predict_and_stitch
from ptychostudy.io import derive_seed


@pytest.fixture(scope="module")
def replicated(tiny_cfg, tiny_views, tiny_iterative, tmp_path_factory):
    cfg = tiny_cfg.replace(replicate=dataclasses.replace(tiny_cfg.replicate, seeds=2))
    _, tuning, _ = tiny_iterative
    out = tmp_path_factory.mktemp("replicate")
    reports = []
    for name in ("first", "again"):
        replicate.run(cfg, 100000, "dense", tiny_views["dense"], tuning, out / f"{name}.json", out / f"{name}-timing.json",
                      progress=False)
        reports.append(out / f"{name}.json")
    return cfg, reports, out


def test_every_arm_has_every_other_seed_scored_on_the_test_split(replicated):
    cfg, (report, _), out = replicated
    record = json.loads(report.read_text())
    assert record["split"] == "test" and record["data"]["test"]["path"].endswith("test.npz")
    assert set(record["arms"]) == {"pinn", "ptychi", "ptychi_tuned", "gradient"}
    for arm, rows in record["arms"].items():
        assert [row["replicate"] for row in rows] == [1, 2], arm
        for row in rows:
            assert -1 <= row["phase_pearson_r"] <= 1 and -1 <= row["amplitude_pearson_r"] <= 1
            assert row["phase_frc50_resolution_px"] > 0
    # other seeds give other networks (weights and batch order), so other scores
    pinn = record["arms"]["pinn"]
    assert pinn[0]["phase_pearson_r"] != pinn[1]["phase_pearson_r"]
    # the report is byte-stable: wall times go to the timing file only
    assert "seconds" not in report.read_text()
    assert set(json.loads((out / "first-timing.json").read_text())["seconds"]) == set(record["arms"])


def test_a_rerun_writes_the_same_report(replicated):
    _, (first, again), _ = replicated
    assert first.read_bytes() == again.read_bytes()


def test_the_network_replicate_is_phase_e_training_and_phase_g_inference(tiny_cfg, tiny_views, tmp_path):
    """With Phase E's own seed the replicate path gives the very object Phase G infers from the bundle."""
    cfg, view, folder = tiny_cfg, "dense", tiny_views["dense"]
    train.run(cfg, 100000, view, folder, tmp_path / "wts.h5.zip", tmp_path / "r.json", tmp_path / "h.csv",
              tmp_path / "t.json", tmp_path / "f.npz", progress=False)
    gridsize = cfg.view(view).gridsize
    train_split, test_groups = Split.read(folder / "train.npz", gridsize), Split.read(folder / "test.npz", gridsize)
    ours = replicate.train_network(cfg, 100000, view, train_split, test_groups, derive_seed(cfg.train.seed, 100000, view))
    model = load_bundle(tmp_path / "wts.h5.zip").model
    theirs, _ = predict_and_stitch(model, test_groups, cfg.infer.stitch_fraction, cfg.infer.phase_sync, cfg.infer.batch)
    np.testing.assert_array_equal(ours, theirs)


def test_replicate_seeds_differ_from_the_pipeline_seed_and_from_each_other():
    seeds = {replicate.replicate_seed(7, 1000, "dense", k) for k in (1, 2, 3)} | {derive_seed(7, 1000, "dense")}
    assert len(seeds) == 4
