"""Phase F (``reconstruct``): the iterative baseline — pty-chi's LSQML on each view's test split.

Same patterns, same known probe and same positions as the networks see; a neutral initial
object (ones), positions and probe fixed, seeded, a pinned thread count. The object is
reconstructed directly on the ground truth's pixel grid, so Phase G needs no guessing:

* pty-chi's forward model uses the unnormalised FFT, ours the orthonormal one, so the
  probe handed to pty-chi is ``s · P / N`` (s: the data set's dose scale, P: the unit-power
  probe, N: the pattern side); its predicted counts then equal ``physics.expected_intensity``.
* pty-chi's Fourier-shift patch extractor cuts the patch centred at index ``p`` from
  ``p − (N − 1)/2``; ours at centre ``c`` from ``c − N/2``. With the position origin
  ``SPECIFIED`` as (H/2 − ½, W/2 − ½) and positions ``c − (H/2, W/2)``, both cut the same
  pixels. ``tests/test_reconstruct.py`` checks both facts against ``physics``.
"""

from __future__ import annotations

import importlib.metadata
import logging
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ptychostudy import StudyError, layout, torchvision_shim
from ptychostudy.config import Config, as_dict, load_config
from ptychostudy.dataset import Split
from ptychostudy.io import derive_seed, json_array, read_metadata, read_npz, sha256_file, write_json, write_npz

SPLIT = "test"
RECONSTRUCTION_KEYS = ("object", "cost", "_metadata")


def _ptychi():
    """Import pty-chi (with the torchvision stand-in where needed), quietly."""
    torchvision_shim.install()
    try:
        import ptychi  # noqa: F401  (the package must import before its api)
        from ptychi import api
        from ptychi.api.task import PtychographyTask
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise StudyError(f"pty-chi is not installed ({exc}); run `make install` (README: set-up)") from None
    logging.getLogger("ptychi").setLevel(logging.WARNING)
    root = logging.getLogger()
    if not any(isinstance(f, _EdgePaddingNotice) for f in root.filters):
        root.addFilter(_EdgePaddingNotice())
    return api, PtychographyTask


class _EdgePaddingNotice(logging.Filter):
    """Drop pty-chi's notice that patches at the scan's edge reach one pixel beyond the object.

    Its Fourier-shift extractor cuts N + 2 pixels; for positions whose patch touches the
    edge of the (ground-truth-sized) object it pads with zeros and says so on every batch.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("A probe-grid object tensor with a lateral size")


def ptychi_probe(split: Split) -> np.ndarray:
    """The probe in pty-chi's units: (1, 1, N, N) complex64, ``s · P / N``."""
    size = split.probe.shape[-1]
    return (split.intensity_scale * split.probe.numpy().astype(np.complex128) / size).astype(np.complex64)[None, None]


def origin(shape: tuple[int, int]) -> tuple[list[float], float, float]:
    """(pty-chi's position origin, y offset, x offset) that put its object on our grid."""
    height, width = shape
    return [height / 2 - 0.5, width / 2 - 0.5], height / 2, width / 2


def build_task(settings, split: Split, epochs: int, seed: int):
    """A pty-chi LSQML task on ``split``'s patterns, reconstructing on the truth's grid."""
    api, PtychographyTask = _ptychi()
    shape = split.truth.shape
    o = api.LSQMLOptions()
    r = o.reconstructor_options
    r.default_device = api.Devices.CPU
    r.num_epochs = epochs
    r.batch_size = settings.batch_size
    r.noise_model = api.NoiseModels.GAUSSIAN if settings.noise_model == "gaussian" else api.NoiseModels.POISSON
    r.random_seed = seed
    r.rescale_probe_intensity_in_first_epoch = False  # the probe is known exactly
    if settings.momentum > 0:
        r.momentum_acceleration_gain = settings.momentum
        r.batching_mode = api.BatchingModes.COMPACT  # LSQML applies object momentum to compact batches only
    o.data_options.fft_shift = True  # our patterns have zero frequency at the centre
    ob = o.object_options
    ob.optimizable = True
    ob.optimizer = api.Optimizers.SGD
    ob.step_size = 1
    ob.pixel_size_m = 1.0  # geometry enters through the probe and positions only (far field)
    ob.remove_object_probe_ambiguity.enabled = False
    ob.patch_interpolation_method = api.PatchInterpolationMethods.FOURIER
    ob.determine_position_origin_coords_by = api.ObjectPosOriginCoordsMethods.SPECIFIED
    pos_origin, dy, dx = origin(shape)
    ob.position_origin_coords = pos_origin
    o.probe_options.optimizable = False
    o.probe_position_options.optimizable = False
    counts = split.amplitude.double() ** 2
    return PtychographyTask(
        o,
        diffraction_data=counts.to(torch.float32),
        object_data=torch.ones((1, *shape), dtype=torch.complex64),
        probe_data=torch.from_numpy(ptychi_probe(split)),
        probe_position_x_px=torch.from_numpy(split.positions[:, 1] - dx),
        probe_position_y_px=torch.from_numpy(split.positions[:, 0] - dy),
    )


def reconstruct(settings, split: Split, epochs: int, seed: int, *, progress: bool = True, desc: str = "pty-chi"):
    """Run LSQML; returns (object (H, W) complex64, cost per epoch)."""
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        # pty-chi converts a tensor that requires grad to a float for its loss log
        warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad=True to a scalar")
        task = build_task(settings, split, epochs, seed)
        for _ in tqdm(range(epochs), desc=desc, unit="epoch", disable=not progress):
            task.run(n_epochs=1)
        table = task.reconstructor.loss_tracker.table
        cost = np.asarray(table["loss"], dtype=np.float64)
        obj = task.get_data_to_cpu("object", as_numpy=True)[0]
    return np.asarray(obj, dtype=np.complex64), cost


def read_reconstruction(path) -> tuple[np.ndarray, np.ndarray, dict]:
    """Load a Phase F file (no pickle): (object, cost per epoch, metadata)."""
    arrays = read_npz(path, "Phase F reconstruction", hint="run the reconstruct stage first")
    if sorted(arrays) != sorted(RECONSTRUCTION_KEYS):
        raise StudyError(f"{path}: expected the keys {', '.join(RECONSTRUCTION_KEYS)}, found {', '.join(sorted(arrays))}")
    return arrays["object"], arrays["cost"], read_metadata(arrays, str(path))


def run(cfg: Config, dose, view: str, view_dir, out, report, timing, *, progress: bool = True) -> dict:
    # load: every input read and checked first
    dose = cfg.dose(dose)
    definition = cfg.view(view)
    out, report, timing = map(Path, (out, report, timing))
    summary = layout.read_view_summary(view_dir, dose, view)
    settings = cfg.reconstruct
    record = {"dose": dose, "view": view, "phase": "F", "split": SPLIT, "solver": "pty-chi LSQML"}
    if summary["skipped"]:
        record.update(skipped=True, reason=summary["reason"])
        write_npz(out, {"object": np.zeros((0, 0), np.complex64), "cost": np.zeros(0), "_metadata": json_array(record)})
        write_json(report, record)
        return record
    data_path = layout.view_file(view_dir, SPLIT)
    split = Split.read(data_path, 1, require_groups=definition.gridsize > 1)
    # compute
    torch.set_num_threads(settings.threads)
    epochs = settings.epochs[view]
    seed = derive_seed(settings.seed, dose, view) % (2**31)
    start = time.perf_counter()
    obj, cost = reconstruct(settings, split, epochs, seed, progress=progress, desc=f"pty-chi dose {dose} {view}")
    seconds = time.perf_counter() - start
    # write
    record.update(
        skipped=False,
        ptychi_version=importlib.metadata.version("ptychi"),
        data={"path": str(data_path), "sha256": sha256_file(data_path)},
        positions=split.patterns,
        epochs=epochs,
        settings=as_dict(cfg)["reconstruct"],
        cost_first=float(cost[0]),
        cost_final=float(cost[-1]),
        object_shape=list(obj.shape),
    )
    write_npz(out, {"object": obj, "cost": cost, "_metadata": json_array(record)})
    write_json(report, record)
    write_json(timing, {"dose": dose, "view": view, "reconstruct_seconds": seconds, "epochs": epochs,
                        "positions": record["positions"], "threads": settings.threads, "torch": torch.__version__})
    return {**record, "seconds": seconds}


def cli(args) -> None:
    """``ptychostudy reconstruct``: one cell, then its headline on stdout."""
    r = run(load_config(args.params), args.dose, args.view, args.view_dir, args.out, args.report, args.timing,
            progress=not args.no_progress)
    if r["skipped"]:
        print(f"reconstruct dose {r['dose']} {r['view']}: SKIPPED ({r['reason']})")
    else:
        print(f"reconstruct dose {r['dose']} {r['view']}: {r['positions']} positions, {r['epochs']} LSQML epochs in "
              f"{r['seconds']:.1f} s, cost {r['cost_first']:.4g} -> {r['cost_final']:.4g} -> {args.out}")
