"""The spread: every arm rerun with other seeds and on redrawn counts, trained and scored exactly as Phases E-G do."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ptychostudy import replicate, train
from ptychostudy.bundle import load_bundle
from ptychostudy.dataset import Split
from ptychostudy.inference import predict_and_stitch
from ptychostudy.io import derive_seed


@pytest.fixture(scope="module")
def replicated(tiny_cfg, tiny_base, tiny_views, tiny_iterative, tmp_path_factory):
    """The replicate stage twice on the tiny dense cell (one other seed, one noise redraw), with a Phase E network
    and the prepared base of the tiny profile."""
    from ptychostudy.prepared import write_base

    cfg = tiny_cfg
    _, tuning, _ = tiny_iterative
    out = tmp_path_factory.mktemp("replicate")
    train.run(cfg, "run1084", 100000, "dense", tiny_views["dense"], out / "wts.h5.zip", out / "r.json", out / "h.csv",
              out / "t.json", out / "f.npz", progress=False)
    write_base(tiny_base, out / "base.npz")
    reports = []
    for name in ("first", "again"):
        replicate.run(cfg, "run1084", 100000, "dense", tiny_views["dense"], tuning, out / "wts.h5.zip", out / "base.npz",
                      out / f"{name}.json", out / f"{name}-timing.json", progress=False)
        reports.append(out / f"{name}.json")
    return cfg, reports, out


def test_every_arm_has_every_other_seed_and_a_noise_redraw_scored_on_the_test_split(replicated):
    cfg, (report, _), out = replicated
    record = json.loads(report.read_text())
    assert record["split"] == "test" and record["data"]["test"]["path"].endswith("test.npz")
    assert set(record["arms"]) == {"pinn", "pinn_refined", "ptychi", "ptychi_tuned", "gradient"}
    for arm, rows in record["arms"].items():
        assert [(row["axis"], row["replicate"]) for row in rows] == [("seed", 1), ("noise", 1)], arm
        for row in rows:
            assert -1 <= row["phase_pearson_r"] <= 1 and -1 <= row["amplitude_pearson_r"] <= 1
            frc = row["phase_frc50_resolution_px"]
            assert frc is None or frc >= 1  # null: the FRC never crossed ½
        # another seed on the same data and the own seed on other data give other scores
        assert rows[0]["phase_pearson_r"] != rows[1]["phase_pearson_r"], arm
    # the report is byte-stable: wall times go to the timing file only
    assert "seconds" not in report.read_text()
    assert set(json.loads((out / "first-timing.json").read_text())["seconds"]) == set(record["arms"])


def test_a_rerun_writes_the_same_report(replicated):
    _, (first, again), _ = replicated
    assert first.read_bytes() == again.read_bytes()


def test_a_noise_redraw_is_another_draw_of_the_same_expected_counts(tiny_cfg, tiny_base, tiny_views):
    """The redraw simulates the test positions as Phase C does: other counts, the same mean (two Poisson draws of
    one λ differ per pattern by about sqrt(2 · counts)), and the same seed gives the same counts."""
    split = Split.read(tiny_views["dense"] / "test.npz", 1, require_groups=False)
    new = replicate.redraw(tiny_cfg, tiny_base, split, 5)
    assert torch.equal(new, replicate.redraw(tiny_cfg, tiny_base, split, 5))
    assert not torch.equal(new, split.amplitude)
    old_totals = (split.amplitude.double() ** 2).sum(dim=(1, 2))
    new_totals = (new.double() ** 2).sum(dim=(1, 2))
    tolerance = 5 * float(torch.sqrt(2 * old_totals.mean())) / split.patterns**0.5
    assert abs(float((new_totals - old_totals).mean())) < tolerance
    assert float(((new_totals - old_totals) / old_totals).abs().max()) < 0.05  # per pattern: about 1e5 counts


def test_the_network_replicate_is_phase_e_training_and_phase_g_inference(tiny_cfg, tiny_views, tmp_path):
    """With Phase E's own seed the replicate path gives the very object Phase G infers from the bundle."""
    cfg, view, folder = tiny_cfg, "dense", tiny_views["dense"]
    train.run(cfg, "run1084", 100000, view, folder, tmp_path / "wts.h5.zip", tmp_path / "r.json", tmp_path / "h.csv",
              tmp_path / "t.json", tmp_path / "f.npz", progress=False)
    gridsize = cfg.view(view).gridsize
    train_split, test_groups = Split.read(folder / "train.npz", gridsize), Split.read(folder / "test.npz", gridsize)
    ours, _ = replicate.train_network(cfg, 100000, view, train_split, test_groups, derive_seed(cfg.train.seed, 100000, view))
    model = load_bundle(tmp_path / "wts.h5.zip").model
    theirs, _ = predict_and_stitch(model, test_groups, cfg.infer.stitch_fraction, cfg.infer.phase_sync, cfg.infer.batch)
    np.testing.assert_array_equal(ours, theirs)


def test_replicate_seeds_differ_from_the_pipeline_seed_and_from_each_other():
    seeds = {replicate.replicate_seed(7, 1000, "dense", k) for k in (1, 2, 3)} | {derive_seed(7, 1000, "dense")}
    assert len(seeds) == 4
