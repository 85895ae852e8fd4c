"""ptychodus product files: every reconstructed object of one dose × view cell, as ptychodus opens it.

ptychodus (the APS ptychography data pipeline) reads a reconstruction as an HDF5 "product" file. This
stage writes one ``<arm>.h5`` per arm of the cell that has an object: the networks (their stitched
test-split objects: the infer stage's, the very objects Phase G scores) and the iterative arms
(their Phase F objects); the floor has none. The layout is the one ptychodus 1.7.0 reads:

* root attributes ``detector_object_distance_m``, ``photon_energy_eV``, ``probe_photon_count``,
  ``exposure_time_s`` (float), ``name``, ``comments`` (str) and ``far_field`` (true);
* ``probe_position_indexes`` (int), ``probe_position_x_m``, ``probe_position_y_m`` (float, metres);
* ``probe`` complex (1, 1, N, N) and ``object`` complex (1, H, W), each with ``pixel_width_m`` and
  ``pixel_height_m``; the object also with ``center_x_m``, ``center_y_m``;
* ``object_layer_spacing_m`` (float, shape (0,): one layer);
* ``loss_epochs`` (int) and ``loss_values`` (float): the network's training loss per epoch, pty-chi's
  cost per epoch, the gradient solver's cost per step.

Geometry. A scan position is the centre of its patch in object pixels, pixel (i, j) centred at
(y, x) = (i, j) (``physics``). ptychodus puts a position at pixel x_px = (x_m − center_x_m) /
pixel_width_m + (W − 1) / 2; with x_m = x · pixel and center_x_m = (W − 1) / 2 · pixel every position
lands on the pixel the study used (the same in y).

The study is synthetic and computed in pixels and photons: the physical scales come from params
``product.*``, are nominal, and each file's ``comments`` says so. The object pixel follows from them as
λ·z / (N·detector pixel), N = base.patch_size. Files are byte-stable (no HDF5 time stamps) and the cell's
folder appears only complete (written beside it, then renamed).
"""

from __future__ import annotations

import argparse
import io as _io
import os
import shutil
import sys
from pathlib import Path

import h5py
import numpy as np

from ptychostudy import StudyError, layout, stage
from ptychostudy.arms import FLOOR, LABELS, baseline_view
from ptychostudy.cell import load as load_cell
from ptychostudy.io import sha256_file, write_bytes, write_json
from ptychostudy.params import Params
from ptychostudy.params import load as load_params
from ptychostudy.params.base import BaseParams
from ptychostudy.params.product import ProductParams
from ptychostudy.params.study import StudyParams

HC_EV_M = 1.239841984e-6  # h·c in eV·m: λ = HC_EV_M / E
INDEX = "products.json"  # the cell's list of product files (or why it has none)


def wavelength_m(photon_energy_eV: float) -> float:
    return HC_EV_M / photon_energy_eV


def object_pixel_m(cfg: Params) -> float:
    """The far-field object pixel λ·z / (N·p) of the nominal geometry (params product.*)."""
    p = cfg.product
    return wavelength_m(p.photon_energy_eV) * p.detector_distance_m / (cfg.base.patch_size * p.detector_pixel_m)


def product_bytes(*, obj: np.ndarray, probe: np.ndarray, positions: np.ndarray, pixel_m: float, cfg: Params,
                  name: str, comments: str, photon_count: float, loss: np.ndarray) -> bytes:
    """One product file's bytes. ``obj`` (H, W) and ``probe`` (N, N) complex; ``positions`` (n, 2) patch
    centres (y, x) in object pixels; ``loss`` one value per epoch (or step)."""
    obj, probe = np.asarray(obj), np.asarray(probe)
    positions, loss = np.asarray(positions, dtype=np.float64), np.asarray(loss, dtype=np.float64).ravel()
    if obj.ndim != 2 or probe.ndim != 2 or positions.ndim != 2 or positions.shape[1] != 2:
        raise StudyError(f"product {name}: expected an (H, W) object, an (N, N) probe and (n, 2) positions, got "
                         f"{obj.shape}, {probe.shape}, {positions.shape}")
    height, width = obj.shape
    buffer = _io.BytesIO()
    with h5py.File(buffer, "w", track_order=True) as h5:
        h5.attrs["name"] = name
        h5.attrs["comments"] = comments
        h5.attrs["detector_object_distance_m"] = float(cfg.product.detector_distance_m)
        h5.attrs["photon_energy_eV"] = float(cfg.product.photon_energy_eV)
        h5.attrs["probe_photon_count"] = float(photon_count)
        h5.attrs["exposure_time_s"] = float(cfg.product.exposure_time_s)
        h5.attrs["far_field"] = True

        def dataset(key: str, data: np.ndarray) -> h5py.Dataset:
            return h5.create_dataset(key, data=data, track_times=False)

        dataset("probe_position_indexes", np.arange(len(positions), dtype=np.int64))
        dataset("probe_position_x_m", positions[:, 1] * pixel_m)
        dataset("probe_position_y_m", positions[:, 0] * pixel_m)
        p = dataset("probe", probe.astype(np.complex64)[None, None])
        p.attrs["pixel_width_m"] = pixel_m
        p.attrs["pixel_height_m"] = pixel_m
        o = dataset("object", obj.astype(np.complex64)[None])
        o.attrs["center_x_m"] = (width - 1) / 2 * pixel_m
        o.attrs["center_y_m"] = (height - 1) / 2 * pixel_m
        o.attrs["pixel_width_m"] = pixel_m
        o.attrs["pixel_height_m"] = pixel_m
        dataset("object_layer_spacing_m", np.zeros(0, dtype=np.float64))
        dataset("loss_epochs", np.arange(1, len(loss) + 1, dtype=np.int64))
        dataset("loss_values", loss)
    return buffer.getvalue()


def read_product(path: str | Path) -> dict:
    """A product file's arrays and attributes (``attrs``, and ``<dataset>.attrs`` per dataset), for checks."""
    try:
        with h5py.File(path, "r") as h5:
            out = {"attrs": {k: _plain(v) for k, v in h5.attrs.items()}}
            for key, item in h5.items():
                if not isinstance(item, h5py.Dataset):
                    raise StudyError(f"{path}: {key} is not a dataset")
                out[key] = item[()]
                out[f"{key}.attrs"] = {k: _plain(v) for k, v in item.attrs.items()}
    except OSError as exc:
        raise StudyError(f"{path}: not a readable HDF5 product file ({exc})") from None
    return out


def _plain(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_loss(path: str | Path) -> np.ndarray:
    """The training loss per epoch from a train stage's history CSV (columns epoch, loss, ...)."""
    path = Path(path)
    if not path.is_file():
        raise StudyError(f"missing input: {path} (the training history); run the train stage first")
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split(",") if lines else []
    if header[:2] != ["epoch", "loss"]:
        raise StudyError(f"{path}: not a training history (its header must start with epoch,loss; got {lines[:1]})")
    try:
        values = np.array([float(line.split(",")[1]) for line in lines[1:] if line], dtype=np.float64)
    except (IndexError, ValueError):
        raise StudyError(f"{path}: a row without a numeric loss") from None
    return values


COMMENT = ("ptychostudy, a synthetic study: diffraction simulated from a real probe and an object ({obj}). The physical scales "
           "here (photon energy, distance, pixel sizes) are nominal (params product.*); the study itself is computed "
           "in object pixels and photons per pattern. Arm: {label}. Dose {dose} photons per pattern, view {view}, "
           "test split. Loss: {loss}.")
LOSS = {"pinn": "training loss per epoch (Poisson deviance)", "pinn_gs1": "training loss per epoch (Poisson deviance)",
        "ptychi": "pty-chi cost per epoch", "ptychi_tuned": "pty-chi cost per epoch", "ptychi_heldout": "pty-chi cost per epoch",
        "gradient": "Poisson negative log-likelihood per step", "gradient_heldout": "Poisson negative log-likelihood per step",
        "pinn_refined": "refinement loss per step on the test patterns (Poisson deviance)",
        "pinn_ptychi": "pty-chi cost per epoch (started from the network's object)",
        "pinn_gradient": "Poisson negative log-likelihood per step (started from the network's object)"}


def run(cfg: Params, obj: str, dose, view: str, view_dir, inferred, reconstructions, train_reports, out_dir) -> dict:
    cell = load_cell(cfg, obj, dose, view, view_dir, inferred, reconstructions)
    out_dir = Path(out_dir)
    record = {"object": cell.obj, "dose": cell.dose, "view": cell.view, "nominal": True, "object_pixel_m": object_pixel_m(cfg)}
    if cell.summary["skipped"]:
        return _publish(out_dir, {**record, "skipped": True, "reason": cell.summary["reason"], "files": {}}, {})
    arms = [a for a in cell.arms if a != FLOOR]
    losses = {a: cell.stored[a][1] for a in arms if a in cell.stored}  # read once, by cell.load
    for arm in arms:
        if arm in cell.inferred:
            trained_view = view if arm == "pinn" else baseline_view(cfg, cell.obj)
            losses[arm] = read_loss(Path(train_reports) / f"{layout.cell_tag(cell.obj, cell.dose, trained_view)}.csv")
    objects = cell.objects()
    test = cell.test
    pixel = record["object_pixel_m"]
    files = {}
    for arm in arms:
        files[layout.product_file(".", arm).name] = product_bytes(
            obj=objects[arm], probe=test.probe.numpy(), positions=test.positions, pixel_m=pixel, cfg=cfg,
            name=f"{arm} {cell.obj} dose {cell.dose} {cell.view}", photon_count=cell.dose, loss=losses[arm],
            comments=COMMENT.format(obj=cell.obj, label=LABELS[arm], dose=cell.dose, view=cell.view, loss=LOSS[arm]))
    return _publish(out_dir, {**record, "skipped": False, "arms": arms}, files)


def _publish(out_dir: Path, record: dict, files: dict[str, bytes]) -> dict:
    """Write the cell's folder beside its place and rename it there: never a folder that looks finished
    but is not."""
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for name, data in files.items():
            write_bytes(tmp / name, data)
        record = {**record, "files": {name: sha256_file(tmp / name) for name in sorted(files)}}
        write_json(tmp / INDEX, record)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return record


def cli(args) -> None:
    """``ptychostudy product``: one cell's product files, then one line naming them."""
    record = run(load_params(args.params, StudyParams, BaseParams, ProductParams), args.obj, args.dose, args.view, args.view_dir,
                 args.inferred, args.reconstructions, args.train_reports, args.out_dir)
    if record["skipped"]:
        print(f"product {record['object']} dose {record['dose']} {record['view']}: SKIPPED ({record['reason']})")
    else:
        print(f"product {record['object']} dose {record['dose']} {record['view']}: {', '.join(record['files'])} in {args.out_dir} "
              f"(object pixel {record['object_pixel_m'] * 1e9:.1f} nm, nominal)")


def build_parser(prog: str = "python -m ptychostudy.product") -> argparse.ArgumentParser:
    p = stage.parser(prog, help="ptychodus product files (HDF5) of every object of one dose × view",
                       description="Write one ptychodus product file (<arm>.h5, the HDF5 layout ptychodus 1.7.0 reads) "
                       "per arm of the cell that has an object: the networks' stitched test-split objects (the infer "
                       "stage's, the ones Phase G scores) and the iterative arms' Phase F objects, each with the known probe, the "
                       "scan positions in metres, and the training loss or solver cost per epoch; plus products.json. "
                       "The physical scales are nominal (params product.*).")
    stage.add_cell(p, "folder with test.npz and view.json")
    p.add_argument("--inferred", type=Path, required=True, help="the infer stage's file of this cell (the networks' objects)")
    p.add_argument("--reconstructions", type=Path, required=True,
                   help="Phase F folder of this dose × view (ptychi.npz, ptychi_tuned.npz, gradient.npz, pinn_refined.npz)")
    p.add_argument("--train-reports", type=Path, required=True,
                   help="folder of the train stage's histories (dose_<d>-<view>.csv: the networks' loss per epoch)")
    p.add_argument("--out-dir", type=Path, required=True, help="folder for <arm>.h5 and products.json")
    return p


def main(argv: list[str] | None = None, prog: str = "python -m ptychostudy.product") -> int:
    return stage.main(cli, build_parser(prog), argv, timed=True)


if __name__ == "__main__":
    sys.exit(main())
