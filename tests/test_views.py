"""Phase D: spacing, groups, measured overlap, skipped views."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ptychostudy import physics
from ptychostudy.config import config_from_dict
from ptychostudy.dataset import read_dataset
from ptychostudy.grouping import make_groups, nearest_neighbours
from ptychostudy.views import build_view, select_spaced


def test_select_spaced_keeps_every_pair_at_least_s_apart():
    rng = np.random.default_rng(0)
    points = rng.uniform(0, 200, size=(3000, 2))
    kept = select_spaced(points, 9.0, np.random.default_rng(1))
    sub = points[kept]
    d = np.sqrt(((sub[:, None] - sub[None]) ** 2).sum(-1)) + np.eye(len(sub)) * 1e9
    assert d.min() >= 9.0
    assert len(kept) > 250  # a Poisson-disc sample fills the area (≈ 0.55·A / (π S²/4) at jamming)
    # maximal: every rejected point has a kept point closer than S
    rejected = np.setdiff1d(np.arange(len(points)), kept)
    dr = np.sqrt(((points[rejected][:, None] - sub[None]) ** 2).sum(-1))
    assert np.all(dr.min(axis=1) < 9.0)
    assert np.array_equal(kept, select_spaced(points, 9.0, np.random.default_rng(1)))  # seeded


def test_nearest_neighbours_self_first_and_sorted():
    points = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [0.0, 2.5]])
    idx, dist = nearest_neighbours(points, 3, chunk=2)
    assert idx[:, 0].tolist() == [0, 1, 2, 3]
    assert idx[0].tolist() == [0, 1, 3] and dist[0].tolist() == [0.0, 1.0, 2.5]
    assert np.all(np.diff(dist, axis=1) >= 0)


def test_groups_are_c_subsets_of_the_k_nearest():
    rng = np.random.default_rng(3)
    points = rng.uniform(0, 100, size=(40, 2))
    groups = make_groups(points, 4, 7, 35, np.random.default_rng(0))
    idx, _ = nearest_neighbours(points, 7)
    neighbourhoods = [set(row) for row in idx]
    assert groups.shape[1] == 4
    assert len({tuple(g) for g in groups}) == len(groups)  # no duplicate sets
    for group in groups:
        assert len(set(group)) == 4
        assert any(set(group) <= hood for hood in neighbourhoods)
    assert len(groups) <= 40 * 35
    fewer = make_groups(points, 4, 7, 5, np.random.default_rng(0))
    assert len(fewer) <= 40 * 5


def test_gridsize_one_groups_are_single_positions():
    groups = make_groups(np.zeros((10, 2)), 1, 7, 35, np.random.default_rng(0))
    assert sorted(groups[:, 0].tolist()) == list(range(10))


@pytest.fixture
def views_of(tiny_cfg, tiny_simulated, tmp_path):
    folder, _ = tiny_simulated

    def build(view, cfg=tiny_cfg):
        return build_view(cfg, "run1084", 100000, view, folder, tmp_path / view, tmp_path / f"{view}.json", tmp_path / f"{view}.png", progress=False)

    return build


def test_dense_view_spacing_overlap_and_groups(tiny_cfg, views_of, tmp_path):
    summary = views_of("dense")
    assert not summary["skipped"]
    diameter = summary["probe_diameter_px"]
    assert 25 < diameter < 35  # the fly001 probe: 90 % of its power within about 30 px
    spacing = (1 - 0.7) * diameter
    assert summary["min_spacing_px"] == pytest.approx(spacing)
    for split in ("train", "test"):
        arrays = read_dataset(tmp_path / "dense" / f"{split}.npz", require_groups=True)
        points = np.stack([arrays["xcoords"], arrays["ycoords"]], 1)
        d = np.sqrt(((points[:, None] - points[None]) ** 2).sum(-1)) + np.eye(len(points)) * 1e9
        assert d.min() >= spacing
        facts = summary[split]
        assert facts["positions"] == len(points) and facts["groups"] == len(arrays["groups"])
        assert facts["nn_distance_min_px"] == pytest.approx(d.min())
        assert facts["area_overlap_nn_mean"] == pytest.approx(np.mean(physics.disc_overlap(d.min(1), diameter)))
        assert arrays["groups"].shape[1] == 4
    saved = json.loads((tmp_path / "dense.json").read_text())
    assert saved["train"]["positions"] == summary["train"]["positions"]


def test_baseline_keeps_every_position(views_of, tiny_simulated, tmp_path):
    folder, _ = tiny_simulated
    views_of("baseline")
    view = read_dataset(tmp_path / "baseline" / "test.npz", require_groups=True)
    full = read_dataset(folder / "patched_test.npz")
    assert np.array_equal(view["diffraction"], full["diffraction"])
    assert view["groups"].shape == (len(full["xcoords"]), 1)


def test_a_view_with_too_few_positions_is_skipped_with_a_reason(params, views_of, tmp_path):
    params["views"]["min_positions"] = 1000
    summary = views_of("sparse", config_from_dict(params))
    assert summary["skipped"]
    assert "fewer than the 1000 needed to train" in summary["reason"]
    assert json.loads((tmp_path / "sparse" / "view.json").read_text())["skipped"] is True
    # both split files exist (the tune stage depends on the train file) and say that the view is skipped
    from ptychostudy.dataset import metadata, read_dataset

    for split in ("train", "test"):
        arrays = read_dataset(tmp_path / "sparse" / f"{split}.npz")
        assert metadata(arrays)["skipped"] is True and "groups" not in arrays
        assert 0 < arrays["diffraction"].shape[0] < 1000


def test_view_selection_is_the_same_for_every_dose(tiny_cfg, tiny_base, tiny_simulated, tmp_path):
    from ptychostudy.simulate import simulate_dose

    folder, _ = tiny_simulated
    simulate_dose(tiny_cfg, tiny_base, 1000, tmp_path / "low", tmp_path / "r.json", tmp_path / "f.png", progress=False)
    a = build_view(tiny_cfg, "run1084", 1000, "dense", tmp_path / "low", tmp_path / "a", tmp_path / "a.json", tmp_path / "a.png", progress=False)
    b = build_view(tiny_cfg, "run1084", 100000, "dense", folder, tmp_path / "b", tmp_path / "b.json", tmp_path / "b.png", progress=False)
    ga = read_dataset(tmp_path / "a" / "train.npz")["scan_index"]
    gb = read_dataset(tmp_path / "b" / "train.npz")["scan_index"]
    assert np.array_equal(ga, gb) and a["train"]["groups"] == b["train"]["groups"]
