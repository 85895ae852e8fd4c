"""Phase C on the tiny profile: counts, split, guard band, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from ptychostudy import physics
from ptychostudy.base import prepare_base
from ptychostudy.dataset import metadata, read_dataset
from ptychostudy.simulate import SPLITS, simulate_dose, split_geometry, touched_range
from conftest import OBJECT, PROBE


def test_base_zoom_and_featured_region(cfg, params):
    from ptychostudy.config import config_from_dict

    params["base"]["object_zoom"] = 2
    base2 = prepare_base(config_from_dict(params), PROBE, OBJECT)
    assert base2.obj.shape == (454, 452)
    assert base2.probe.shape == (64, 64)
    assert np.sum(np.abs(base2.probe) ** 2) == pytest.approx(1.0, rel=1e-5)
    assert base2.featured == (79, 378, 73, 380)
    r0, r1, c0, c1 = base2.featured
    outside = np.ones(base2.obj.shape, bool)
    outside[r0 : r1 + 1, c0 : c1 + 1] = False
    assert np.allclose(base2.obj[outside], 1.0, atol=1e-6)


def test_mean_counts_match_the_dose_within_poisson_error(tiny_simulated):
    folder, facts = tiny_simulated
    totals = []
    for split in SPLITS:
        diffraction = read_dataset(folder / f"patched_{split}.npz")["diffraction"].astype(np.float64)
        counts = diffraction**2
        assert np.allclose(counts, np.round(counts), atol=1e-3)  # sqrt of whole counts
        totals.append(counts.sum(axis=(1, 2)))
    totals = np.concatenate(totals)
    # The expected mean is the dose exactly; Poisson error of the mean is sqrt(dose / n).
    assert abs(totals.mean() - 100000) < 4 * np.sqrt(100000 / len(totals))
    assert facts["mean_counts_per_pattern"] == pytest.approx(totals.mean(), rel=1e-6)


def test_simulated_counts_follow_the_forward_model(tiny_cfg, tiny_base, tiny_simulated):
    """Recompute the expected counts of one pattern from the stored probe, object and position."""
    import torch

    folder, facts = tiny_simulated
    arrays = read_dataset(folder / "patched_train.npz")
    meta = metadata(arrays)
    obj = torch.from_numpy(arrays["objectGuess"].astype(np.complex128))
    probe = torch.from_numpy(arrays["probeGuess"].astype(np.complex128))
    n = probe.shape[0]
    k = 5
    y0 = physics.top_left(torch.tensor([arrays["ycoords"][k]]), n)
    x0 = physics.top_left(torch.tensor([arrays["xcoords"][k]]), n)
    expected = physics.expected_intensity(probe, physics.extract_patches(obj, y0, x0, n), meta["intensity_scale"])[0].numpy()
    counts = arrays["diffraction"][k].astype(np.float64) ** 2
    # Poisson: the total agrees within a few standard deviations, and zero-rate pixels stay empty
    assert abs(counts.sum() - expected.sum()) < 5 * np.sqrt(expected.sum())
    assert np.all(counts[expected < 1e-9] == 0)
    assert meta["diffraction_quantity"] == "amplitude = sqrt(photon counts)"


def test_guard_band_no_object_row_in_both_splits(tiny_cfg, tiny_simulated):
    folder, facts = tiny_simulated
    n = tiny_cfg.base.patch_size
    train = read_dataset(folder / "patched_train.npz")["ycoords"]
    test = read_dataset(folder / "patched_test.npz")["ycoords"]
    _, last_train = touched_range(train, n)
    first_test, _ = touched_range(test, n)
    assert first_test - last_train - 1 >= tiny_cfg.simulate.guard_band_px >= n
    assert facts["guard_band_untouched"] == first_test - last_train - 1
    # and directly: the set of object rows each split's bilinear patches read are disjoint
    rows = lambda ys: {r for y in ys for r in range(int(np.floor(y - n / 2)), int(np.floor(y - n / 2)) + n + 1)}
    assert not rows(train) & rows(test)


def test_split_geometry_refuses_an_object_too_small():
    with pytest.raises(Exception, match="no room for train positions"):
        split_geometry((150, 150), 64, 64, "y")


def test_same_stage_twice_gives_identical_bytes(tiny_cfg, tiny_base, tiny_simulated, tmp_path):
    folder, _ = tiny_simulated
    simulate_dose(tiny_cfg, tiny_base, 100000, tmp_path / "again", tmp_path / "r.json", tmp_path / "f.png", progress=False)
    for split in SPLITS:
        assert (tmp_path / "again" / f"patched_{split}.npz").read_bytes() == (folder / f"patched_{split}.npz").read_bytes()


def test_positions_are_identical_across_doses_and_noise_differs(tiny_cfg, tiny_base, tiny_simulated, tmp_path):
    folder, _ = tiny_simulated
    simulate_dose(tiny_cfg, tiny_base, 1000, tmp_path / "low", tmp_path / "r.json", tmp_path / "f.png", progress=False)
    high = read_dataset(folder / "patched_test.npz")
    low = read_dataset(tmp_path / "low" / "patched_test.npz")
    assert np.array_equal(high["xcoords"], low["xcoords"]) and np.array_equal(high["ycoords"], low["ycoords"])
    assert (low["diffraction"] ** 2).sum(axis=(1, 2)).mean() == pytest.approx(1000, rel=0.1)
