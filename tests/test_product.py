"""ptychodus product files: the layout ptychodus 1.7.0 reads, written byte-stably (module product.py).

The files of a whole (tiny) study are checked against its scan positions in tests/test_dvc_pipeline.py."""

from __future__ import annotations

import numpy as np
import pytest

from ptychostudy import StudyError
from ptychostudy.product import object_pixel_m, product_bytes, read_loss, read_product, wavelength_m

RNG = np.random.default_rng(3)
H, W, N, n = 40, 52, 16, 7


def _product(cfg, tmp_path, **changes):
    arrays = dict(obj=RNG.standard_normal((H, W)) + 1j * RNG.standard_normal((H, W)),
                  probe=RNG.standard_normal((N, N)) + 1j * RNG.standard_normal((N, N)),
                  positions=RNG.uniform(8, 32, size=(n, 2)), loss=np.linspace(3.0, 1.0, 5))
    arrays.update(changes)
    data = product_bytes(**arrays, pixel_m=object_pixel_m(cfg), cfg=cfg, name="ptychi dose 1000 dense",
                         comments="nominal scales", photon_count=1000)
    path = tmp_path / "ptychi.h5"
    path.write_bytes(data)
    return arrays, data, read_product(path)


def test_a_product_has_the_keys_dtypes_and_shapes_ptychodus_reads(cfg, tmp_path):
    arrays, _, product = _product(cfg, tmp_path)
    assert set(product) - {k for k in product if k.endswith(".attrs")} == {
        "attrs", "probe_position_indexes", "probe_position_x_m", "probe_position_y_m", "probe", "object",
        "object_layer_spacing_m", "loss_epochs", "loss_values"}
    root = product["attrs"]
    assert {"detector_object_distance_m", "photon_energy_eV", "name", "comments", "probe_photon_count",
            "exposure_time_s", "far_field"} <= set(root)
    assert isinstance(root["detector_object_distance_m"], float) and isinstance(root["photon_energy_eV"], float)
    assert root["far_field"] is True and root["name"] == "ptychi dose 1000 dense"
    assert root["photon_energy_eV"] == cfg.product.photon_energy_eV
    assert product["probe"].shape == (1, 1, N, N) and product["probe"].dtype == np.complex64
    assert product["object"].shape == (1, H, W) and product["object"].dtype == np.complex64
    assert np.allclose(product["object"][0], arrays["obj"].astype(np.complex64))
    assert product["probe_position_indexes"].dtype.kind == "i" and list(product["probe_position_indexes"]) == list(range(n))
    assert product["probe_position_x_m"].dtype == np.float64 and product["probe_position_x_m"].shape == (n,)
    assert product["object_layer_spacing_m"].shape == (0,) and product["object_layer_spacing_m"].dtype.kind == "f"
    assert list(product["loss_epochs"]) == [1, 2, 3, 4, 5] and product["loss_epochs"].dtype.kind == "i"
    assert np.array_equal(product["loss_values"], arrays["loss"])
    for key in ("probe.attrs", "object.attrs"):
        assert product[key]["pixel_width_m"] == product[key]["pixel_height_m"] == object_pixel_m(cfg)


def test_every_scan_position_lands_on_the_pixel_the_study_used(cfg, tmp_path):
    arrays, _, product = _product(cfg, tmp_path)
    a = product["object.attrs"]
    x_px = (product["probe_position_x_m"] - a["center_x_m"]) / a["pixel_width_m"] + (W - 1) / 2  # ptychodus's rule
    y_px = (product["probe_position_y_m"] - a["center_y_m"]) / a["pixel_height_m"] + (H - 1) / 2
    assert np.allclose(x_px, arrays["positions"][:, 1], atol=1e-9)  # positions are (y, x) patch centres
    assert np.allclose(y_px, arrays["positions"][:, 0], atol=1e-9)


def test_the_nominal_pixel_follows_from_energy_distance_and_detector(cfg):
    p = cfg.product
    assert wavelength_m(12398.41984) == pytest.approx(1e-10)  # 12.4 keV is 1 Å
    assert object_pixel_m(cfg) == pytest.approx(wavelength_m(p.photon_energy_eV) * p.detector_distance_m
                                                / (cfg.base.patch_size * p.detector_pixel_m))
    assert 1e-9 < object_pixel_m(cfg) < 1e-6


def test_products_are_byte_stable_and_bad_shapes_or_files_are_refused(cfg, tmp_path):
    arrays, data, _ = _product(cfg, tmp_path)
    again = product_bytes(**arrays, pixel_m=object_pixel_m(cfg), cfg=cfg, name="ptychi dose 1000 dense",
                          comments="nominal scales", photon_count=1000)
    assert again == data
    with pytest.raises(StudyError, match="expected an \\(H, W\\) object"):
        _product(cfg, tmp_path, obj=np.ones((1, H, W), complex))
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(StudyError, match="not a readable HDF5 product file"):
        read_product(bad)
    history = tmp_path / "history.csv"
    history.write_text("step,value\n1,2\n")
    with pytest.raises(StudyError, match="not a training history"):
        read_loss(history)
    history.write_text("epoch,loss,test_phase_r\n1,0.5,0.1\n2,0.25,0.2\n")
    assert list(read_loss(history)) == [0.5, 0.25]
