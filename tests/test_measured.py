"""The measured Siemens star (measured.py and the stages measured_ptychi, measured_pinn, measured_compare): the real file read and checked, its geometry, and the stages on it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from conftest import ROOT, tiny_params
from ptychostudy import StudyError, layout, physics
from ptychostudy.bundle import load_bundle
from ptychostudy.config import config_from_dict
from ptychostudy.io import write_json
from ptychostudy.measured import (HALVES, MeasuredDataError, crop_far_field, load, read_pinn, read_result,
                                  resample_probe)
from ptychostudy.measured_compare import PAIRS, run_compare, table
from ptychostudy.measured_pinn import run_pinn
from ptychostudy.measured_ptychi import run_ptychi
from ptychostudy.model import poisson_deviance

DATA = ROOT / layout.MEASURED_DATA
EPOCHS = 6  # pty-chi epochs of the tiny runs (the pipeline takes the tune stage's selection: 80)


@pytest.fixture(scope="module")
def mcfg():
    return config_from_dict(tiny_params())  # measured.epochs 1: one epoch of train.steps_per_epoch (3) steps


@pytest.fixture(scope="module")
def data(mcfg):
    return load(mcfg, DATA)


def test_the_file_is_cropped_halved_and_every_patch_lies_on_the_grid(mcfg, data):
    crop = mcfg.measured.crop
    assert data.counts.shape == (516, crop, crop) and data.counts.dtype == np.float32
    assert 0.9 < data.facts["kept_counts_fraction"] < 1.0  # the central 64 px hold most photons
    # zero frequency was at the corners: after the shift the mean pattern's centre of mass is central
    centre = physics.probe_centroid(np.sqrt(data.counts.mean(axis=0)))
    assert all(abs(c - crop / 2) <= 4 for c in centre), centre  # (the beam sits 2.5 px off centre in x)
    height, width = data.shape
    assert height % 8 == 0 and data.positions[:, 0].min() - crop / 2 >= 0 and data.positions[:, 1].max() + crop / 2 < width
    a, b = data.half("A"), data.half("B")
    assert len(a) == len(b) == 258 and not set(a) & set(b) and set(a) | set(b) == set(range(516))
    # two interleaved halves cover the same area (their extents agree within a few pixels)
    for axis in (0, 1):
        assert abs(np.ptp(data.positions[a, axis]) - np.ptp(data.positions[b, axis])) < 5
    with pytest.raises(StudyError, match="unknown half 'C'"):
        data.half("C")


def test_the_probe_guess_keeps_the_central_far_field():
    rng = np.random.default_rng(0)
    probe = rng.normal(size=(128, 128)) + 1j * rng.normal(size=(128, 128))
    small = resample_probe(probe, 64)
    assert small.shape == (64, 64) and np.isclose((np.abs(small) ** 2).sum(), 1.0)
    big_far = crop_far_field(np.fft.fftshift(np.fft.fft2(probe)), 64)
    small_far = np.fft.fftshift(np.fft.fft2(small))
    ratio = small_far / big_far
    assert np.allclose(ratio, ratio.flat[0], rtol=1e-9)  # the same far field up to one scale


def test_a_changed_or_missing_file_is_refused(mcfg, tmp_path):
    changed = tmp_path / "star.npz.bz2"
    blob = bytearray(DATA.read_bytes())
    blob[1000] ^= 1
    changed.write_bytes(bytes(blob))
    with pytest.raises(MeasuredDataError, match="differs from measured.data_sha256"):
        load(mcfg, changed)
    with pytest.raises(MeasuredDataError, match="no such file"):
        load(mcfg, tmp_path / "absent.npz.bz2")


@pytest.fixture(scope="module")
def stages(mcfg, tmp_path_factory):
    """The four measured stages on the real data (a few pty-chi epochs, a few training steps)."""
    out = tmp_path_factory.mktemp("measured")
    tuning = out / "tuning.json"
    write_json(tuning, {"dose": 100000, "view": "dense", "split": "train", "skipped": False,
                        "ptychi": {"selected": {"noise_model": "poisson", "tv_weight": 10.0, "momentum": 0.5,
                                                "epochs": EPOCHS}}})
    records = {}
    for half in HALVES:
        records[half] = run_ptychi(mcfg, half, DATA, tuning, out / f"ptychi_{half}.npz", out / f"ptychi_{half}.json",
                                   out / f"t_{half}.json", progress=False)
    records["pinn"] = run_pinn(mcfg, DATA, out / "ptychi_A.npz", out / "pinn.h5.zip", out / "pinn.npz",
                               out / "pinn.json", out / "pinn.csv", out / "t_pinn.json", progress=False)
    records["compare"] = run_compare(mcfg, DATA, out, out / "pinn.npz", out / "report", progress=False)
    return out, records, tuning


def test_ptychi_refines_the_probe_and_its_result_predicts_the_counts_through_our_physics(mcfg, data, stages):
    """pty-chi's object and refined probe, put in the study's units, predict the measured counts of their half
    through ``physics`` far better than a blank object does: positions, grid, FFT scale and probe units agree."""
    out, records, _ = stages
    obj, cost, probe, meta = read_result(out / "ptychi_A.npz", "measured pty-chi result")
    assert meta["half"] == "A" and meta["epochs"] == EPOCHS and len(cost) == EPOCHS and cost[-1] < cost[0]
    assert obj.shape == data.shape and probe.shape == (mcfg.measured.crop,) * 2
    assert np.isclose((np.abs(probe) ** 2).sum(), 1.0, rtol=1e-4)
    assert np.abs(probe - data.probe_guess).max() > 1e-3  # refined, not the guess
    idx = data.half("A")
    size = probe.shape[0]
    counts = torch.from_numpy(data.counts[idx].astype(np.float64))

    def deviance(image, dy=0.0, dx=0.0, scale=1.0):
        y0 = physics.top_left(torch.from_numpy(data.positions[idx, 0] + dy), size)
        x0 = physics.top_left(torch.from_numpy(data.positions[idx, 1] + dx), size)
        patches = physics.extract_patches(torch.from_numpy(image.astype(np.complex128)), y0, x0, size)
        expected = physics.expected_intensity(torch.from_numpy(probe.astype(np.complex128)), patches,
                                              scale * meta["intensity_scale"])
        return float(poisson_deviance(expected, counts))

    fitted = deviance(obj)
    assert fitted < 0.6 * deviance(np.ones_like(obj))
    # the fit is best exactly at the study's positions and scale: ±0.5 px in either axis or ±10 % is worse
    # (measured at 80 epochs: 4.99 at the positions, 5.42-5.49 half a pixel off, 8.6-10.0 at ±10 %)
    for dy, dx in ((0.5, 0), (-0.5, 0), (0, 0.5), (0, -0.5)):
        assert fitted < deviance(obj, dy, dx), (dy, dx)
    for scale in (0.9, 1.1):
        assert fitted < deviance(obj, scale=scale), scale


def test_the_network_is_trained_on_half_a_and_applied_to_both(mcfg, data, stages):
    out, records, _ = stages
    obj_b, obj_a = read_pinn(out / "pinn.npz")
    assert obj_b.shape == obj_a.shape == data.shape and np.isfinite(obj_b).all()
    loaded = load_bundle(out / "pinn.h5.zip")
    assert loaded.model.arch.size == mcfg.measured.crop and loaded.model.arch.channels == 4  # dense: gridsize 2
    assert loaded.description["trained_on"].startswith("half A")
    assert records["pinn"]["steps"] == mcfg.train.steps_per_epoch and records["pinn"]["groups"]["A"] > 258
    assert (out / "pinn.csv").read_text().splitlines()[0] == "epoch,loss"
    with pytest.raises(StudyError, match="the network needs half A's probe"):
        run_pinn(mcfg, DATA, out / "ptychi_B.npz", out / "x.h5.zip", out / "x.npz", out / "x.json", out / "x.csv",
                 out / "x_t.json", progress=False)
    assert not (out / "x.h5.zip").exists() and not (out / "x.npz").exists()


def test_the_agreement_report_scores_every_pair_beside_the_blank_floor(stages):
    out, records, _ = stages
    record = json.loads((out / "report" / "measured.json").read_text())
    assert record == json.loads(json.dumps(records["compare"]))
    assert set(record["pairs"]) == set(PAIRS)
    halves, floor = record["pairs"]["ptychi_A_vs_ptychi_B"], record["pairs"]["blank_vs_ptychi_B"]
    assert halves["phase_r"] > 0.5 and halves["phase_r"] > floor["phase_r"] + 0.3
    assert halves["phase_frc50_px"] < floor["phase_frc50_px"]
    assert (out / "report" / "measured.md").read_text() == table(records["compare"])  # computed from the scores
    assert (out / "report" / "measured.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = (out / "report" / "frc.csv").read_text().splitlines()
    assert rows[0] == "pair,cycles_per_px,phase_frc" and {r.split(",")[0] for r in rows[1:]} == set(PAIRS)


def test_a_selection_of_another_cell_or_split_is_refused(mcfg, stages, tmp_path):
    _, _, tuning = stages
    record = json.loads(tuning.read_text())
    for change, message in (({"view": "sparse"}, "not of dose 100000, view dense"),
                            ({"split": "test"}, "must be made on the train split")):
        bad = tmp_path / "bad.json"
        write_json(bad, {**record, **change})
        with pytest.raises(StudyError, match=message):
            run_ptychi(mcfg, "A", DATA, bad, tmp_path / "o.npz", tmp_path / "o.json", tmp_path / "t.json", progress=False)
        assert not (tmp_path / "o.npz").exists()


def test_a_result_file_with_other_keys_is_refused(stages, tmp_path):
    out, _, _ = stages
    shutil.copy(out / "pinn.npz", tmp_path / "ptychi_A.npz")
    with pytest.raises(StudyError, match="expected the keys object, cost, probe, _metadata"):
        read_result(tmp_path / "ptychi_A.npz", "measured pty-chi result")
