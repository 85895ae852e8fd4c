"""The measured Siemens star, stage ``measured_pinn``: the network (``train.*``, the view ``measured.network_view``'s
gridsize and canvas) trained self-supervised through the physics on half A's patterns with the probe pty-chi refined
on half A, then applied to both halves."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ptychostudy import StudyError, stage
from ptychostudy.bundle import save_model
from ptychostudy.inference import predict_and_stitch, setup_torch
from ptychostudy.io import derive_seed, sha256_file, write_json, write_text
from ptychostudy.measured import (
    HALVES,
    MEASURED,
    add_arguments,
    load,
    read_result,
    split_of,
)
from ptychostudy.npz import json_array, write_npz
from ptychostudy.params import Params, as_dict
from ptychostudy.params import load as load_params
from ptychostudy.params.infer import InferParams
from ptychostudy.params.measured import MeasuredParams
from ptychostudy.params.train import architecture
from ptychostudy.training import Trainer

NETWORK_KEYS = {  # the params measured_pinn declares in dvc.yaml, and so the ones its bundle records
    "train": ("threads", "accelerator", "batch_size", "learning_rate", "learning_rate_final", "steps_per_epoch", "filters",
              "depth", "support", "amplitude_max", "skips", "inputs", "augment", "object_stride", "canvas"),
    "measured": ("data_sha256", "crop", "seed", "network_view", "tuning_dose", "epochs"),
}


def declared_params(cfg: Params) -> dict:
    """The params the measured network's bundle records: only those its stage declares (of ``train.canvas``
    the network view's entry), so that a key it does not read never changes its bytes."""
    record = {name: {k: v for k, v in as_dict(getattr(cfg, name)).items() if k in keys} for name, keys in NETWORK_KEYS.items()}
    view = cfg.measured.network_view
    record["train"]["canvas"] = {view: record["train"]["canvas"][view]}
    return record


def run_pinn(cfg: Params, data_path, ptychi_a, bundle, out, report, history, timing, *, progress: bool = True) -> dict:
    """``measured_pinn``: the network trained on half A (with pty-chi's probe of half A), applied to B and A."""
    data = load(cfg, data_path)
    _, _, probe, meta = read_result(ptychi_a, "measured pty-chi result")
    if meta.get("half") != "A":
        raise StudyError(f"{ptychi_a}: holds pty-chi's result of half {meta.get('half')}, the network needs half A's probe")
    m, t = cfg.measured, cfg.train
    gridsize = cfg.view(m.network_view).gridsize
    scale = float(meta["intensity_scale"])
    splits = {half: split_of(cfg, data, half, probe, scale, gridsize) for half in HALVES}
    device = setup_torch(t.threads, t.accelerator)
    seed = derive_seed(m.seed, "network")
    arch = architecture(cfg, m.network_view, m.tuning_dose, m.crop)
    trainer = Trainer(cfg, splits["A"], arch, seed, device)
    bar = tqdm(total=m.epochs * t.steps_per_epoch, desc="measured network (half A)", unit="step", disable=not progress)
    start = time.perf_counter()
    rows = trainer.fit(m.epochs, t.steps_per_epoch, bar=bar)
    seconds = time.perf_counter() - start
    bar.close()
    net = trainer.net.cpu()
    objects = {half: predict_and_stitch(net, split, cfg.infer.stitch_fraction, cfg.infer.phase_sync, cfg.infer.batch)[0]
               for half, split in splits.items()}
    save_model(bundle, net, splits["A"].probe, scale, {
        "measured": True, "trained_on": "half A of the measured Siemens star", "view": m.network_view,
        "gridsize": gridsize, "params": declared_params(cfg),
        "data_sha256": m.data_sha256, "probe_from": {"path": str(ptychi_a), "sha256": sha256_file(ptychi_a)},
    })
    loss = np.array([row["loss"] for row in rows])
    record = {
        "arm": "pinn", "trained_on": "A", "applied_to": "B", "view": m.network_view, "gridsize": gridsize,
        "groups": {half: int(split.groups.shape[0]) for half, split in splits.items()},
        "epochs": m.epochs, "steps": m.epochs * t.steps_per_epoch, "final_loss": float(loss[-1]),
        "probe_from": str(ptychi_a), "bundle": {"path": str(bundle), "sha256": sha256_file(bundle)},
    }
    write_npz(out, {"object": objects["B"].astype(np.complex64), "object_train": objects["A"].astype(np.complex64),
                    "cost": loss, "_metadata": json_array(record)})
    write_text(history, "epoch,loss\n" + "".join(f"{row['epoch']},{row['loss']:.6g}\n" for row in rows))
    write_json(report, record)
    write_json(timing, {"stage": "measured_pinn", "train_seconds": seconds,
                        "ms_per_step": 1000 * seconds / (m.epochs * t.steps_per_epoch), "threads": t.threads,
                        "torch": torch.__version__})
    return {**record, "seconds": seconds}


def cli(args) -> None:
    """``ptychostudy measured-pinn``."""
    cfg = load_params(args.params, MeasuredParams, InferParams)
    progress = not args.no_progress
    r = run_pinn(cfg, args.data, args.ptychi_a, args.bundle, args.out, args.report, args.history, args.timing,
                 progress=progress)
    print(f"measured network: {r['steps']} steps on half A in {r['seconds']:.1f} s, final loss "
          f"{r['final_loss']:.4f}; applied to half B -> {args.out}")


def build_parser(prog: str = "python -m ptychostudy.measured_pinn") -> argparse.ArgumentParser:
    p = stage.parser(prog, help="measured data: the network trained on half A, applied to half B",
                       description=MEASURED + "Train the network (train.*, the view measured.network_view's gridsize "
                       "and canvas) self-supervised through the physics on half A's patterns with the probe pty-chi "
                       "refined on half A, then reconstruct both halves with it (infer.*). Writes the bundle, the "
                       "objects (.npz), a record, the loss per epoch (CSV) and a timing file.")
    add_arguments(p)
    p.add_argument("--ptychi-a", type=Path, required=True, help="measured-ptychi's result of half A (its probe is used)")
    p.add_argument("--bundle", type=Path, required=True, help="wts.h5.zip to write")
    p.add_argument("--out", type=Path, required=True, help="the network's objects (.npz) to write")
    p.add_argument("--report", type=Path, required=True, help="record (JSON) to write")
    p.add_argument("--history", type=Path, required=True, help="loss per epoch (CSV) to write")
    p.add_argument("--timing", type=Path, required=True, help="wall time (JSON) to write; kept out of DVC")
    return p


def main(argv: list[str] | None = None, prog: str = "python -m ptychostudy.measured_pinn") -> int:
    return stage.main(cli, build_parser(prog), argv, timed=True)


if __name__ == "__main__":
    sys.exit(main())
