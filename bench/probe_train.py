"""One training probe in a fresh process (bench/run.py starts it; it is not a test).

Trains the network of one view exactly as Phase E does (``train.Trainer``, the view's train split,
the stage's seed, params' settings) for ``--steps`` steps after ``--warmup`` steps and prints one
JSON line: milliseconds per step, the thread count used and the SHA-256 of the final weights.

    python bench/probe_train.py --dose 100000 --view dense --steps 60 [--threads N] [--native]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

if "--native" in sys.argv:  # load numpy before ptychostudy: its numerical pins then stay off (the machine's widest ISA)
    import numpy  # noqa: F401
import ptychostudy  # noqa: E402,F401  (first: its numerical pins must precede numpy and torch)
from ptychostudy import layout  # noqa: E402
from ptychostudy.params.train import architecture
from ptychostudy.config import load_config  # noqa: E402
from ptychostudy.dataset import Split  # noqa: E402
from ptychostudy.inference import setup_torch  # noqa: E402
from ptychostudy.io import derive_seed  # noqa: E402
from ptychostudy.training import Trainer  # noqa: E402


def weights_digest(net) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(net.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--params", default=str(ROOT / "params.yaml"))
    p.add_argument("--dose", type=int, default=100000)
    p.add_argument("--view", default="dense")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: train.threads)")
    p.add_argument("--native", action="store_true", help="without ptychostudy's numerical pins (the CPU's widest kernels)")
    a = p.parse_args()
    cfg = load_config(a.params)
    t = cfg.train
    device = setup_torch(t.threads if a.threads is None else a.threads, "cpu")
    import torch

    split = Split.read(layout.view_file(layout.view_dir("run1084", a.dose, a.view, ROOT), "train"), cfg.view(a.view).gridsize)
    trainer = Trainer(cfg, split, architecture(cfg, a.view, a.dose), derive_seed(t.seed, a.dose, a.view), device)
    opt = trainer.optimizer()
    batches = trainer.device_batches(a.warmup + a.steps, t.batch_size, t.steps_per_epoch)
    for _ in range(a.warmup):
        trainer.step(opt, next(batches))
    start = time.perf_counter()
    for _ in range(a.steps):
        trainer.step(opt, next(batches))
    ms = 1000 * (time.perf_counter() - start) / a.steps
    print(json.dumps({"ms_per_step": ms, "pinned": ptychostudy.pins_effective, "threads": torch.get_num_threads(),
                      "wait_policy": os.environ.get("OMP_WAIT_POLICY", ""), "weights": weights_digest(trainer.net)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
