"""Two single-threaded stages side by side on this machine: how much does each slow the other?

    python bench/contention_pairs.py WORKSPACE [--epochs 15] [--steps 150]

The study's driver runs single-threaded stages in pairs on 2 cores. This bench times one probe job alone and beside a
partner job started first (both one torch thread, fresh processes; the partner is ended by its own process id when
the probe is done):

* probe ``ptychi``: pty-chi LSQML with the configured setting (``reconstruct.*``) on run1084 1e3 baseline's test split
  for ``--epochs`` epochs (the tune and Phase F stages' work);
* probe ``train``: ``--steps`` Phase E training steps of run1084 1e3 dense's network (the training and refinement
  stages' work);
* partners: none, ``ptychi``, ``train``.

Run it alone on the machine. Prints the table and writes bench/results.json "contention_pairs".
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def child(kind: str, workspace: Path, amount: int) -> None:
    """One job in this process on one thread; prints its seconds (a partner runs until it is ended)."""
    import torch

    torch.set_num_threads(1)
    from ptychostudy.dataset import Split
    from ptychostudy.params import load as load_params

    if kind == "ptychi":
        from ptychostudy.params.reconstruct import PtychiSetting, ReconstructParams
        from ptychostudy.ptychi_solver import reconstruct

        r = load_params(workspace / "params.yaml", ReconstructParams).reconstruct
        split = Split.read(workspace / "data/views/run1084/dose_1000/baseline/test.npz", 1)
        setting = PtychiSetting(noise_model=r.noise_model, tv_weight=0.0, momentum=float(r.momentum))
        start = time.perf_counter()
        reconstruct(setting, r.batch_size, split, amount, 0, progress=False)
    else:
        from ptychostudy.inference import setup_torch
        from ptychostudy.params.train import TrainParams, architecture
        from ptychostudy.params.views import ViewsParams
        from ptychostudy.training import Trainer

        cfg = load_params(workspace / "params.yaml", TrainParams, ViewsParams)
        device = setup_torch(1, "cpu")
        split = Split.read(workspace / "data/views/run1084/dose_1000/dense/train.npz", cfg.view("dense").gridsize)
        trainer = Trainer(cfg, split, architecture(cfg, "dense", 1000), 0, device)
        opt = trainer.optimizer()
        batches = trainer.device_batches(amount, cfg.train.batch_size, cfg.train.steps_per_epoch)
        start = time.perf_counter()
        for _ in range(amount):
            trainer.step(opt, next(batches))
    print(json.dumps({"seconds": time.perf_counter() - start}), flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("workspace", type=Path)
    p.add_argument("--epochs", type=int, default=15, help="pty-chi probe epochs")
    p.add_argument("--steps", type=int, default=150, help="training probe steps")
    p.add_argument("--child", choices=["ptychi", "train"], help=argparse.SUPPRESS)
    p.add_argument("--amount", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(args.child, args.workspace, args.amount)
        return 0
    me = [sys.executable, str(Path(__file__).resolve()), str(args.workspace)]
    rows = []
    for probe, amount in (("ptychi", args.epochs), ("train", args.steps)):
        for partner in (None, "ptychi", "train"):
            other = None
            if partner is not None:  # a partner long enough to outlast the probe; ended by its id below
                other = subprocess.Popen(me + ["--child", partner, "--amount", "100000"], stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
                time.sleep(8)  # its imports and set-up done: it is computing when the probe starts
            try:
                out = subprocess.run(me + ["--child", probe, "--amount", str(amount)], capture_output=True, text=True,
                                     check=True).stdout
            finally:
                if other is not None:
                    other.kill()
                    other.wait()
            seconds = json.loads(out.strip().splitlines()[-1])["seconds"]
            rows.append({"probe": probe, "partner": partner or "none", "seconds": seconds})
            alone = next(r["seconds"] for r in rows if r["probe"] == probe and r["partner"] == "none")
            print(f"{probe} ({amount}) beside {partner or 'nothing'}: {seconds:.1f} s ({seconds / alone:.2f}x alone)",
                  flush=True)
    from machine import machine, save_result

    save_result("contention_pairs", {"machine": machine(), "epochs": args.epochs, "steps": args.steps, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
