"""Every torch operation of one training step (or pty-chi epoch), fingerprinted: find where two CPUs part ways.

Runs ``--steps`` training steps of one view's network exactly as Phase E does (``train.Trainer`` on the
view's train split, the stage's seed, params' settings, the package's numerical pins) under a torch
dispatch mode that records, for every aten operation in order, its name, its outputs' shapes and a
SHA-256 of their bytes. With ``--ptychi EPOCHS`` it records instead that many epochs of the configured
pty-chi arm on the view's test split, exactly as the reconstruct stage runs it (settings, batch size, seed,
threads). Two traces made on two machines (or two settings) then show the *first* operation whose output
differs while its inputs did not (``--compare A B``).

    python bench/op_trace.py --out bench/traces/<name>.jsonl.gz [--dose 100000 --view dense --threads 1]
    python bench/op_trace.py --ptychi 1 --out bench/traces/<name>.jsonl.gz [--dose 100000 --view dense]
    python bench/op_trace.py --compare bench/traces/a.jsonl.gz bench/traces/b.jsonl.gz

Needs the study's view files (``dvc pull`` or ``dvc repro views``). Not a test: a diagnostic whose
traces are kept in bench/traces/ with the machine they came from (first line of each trace).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

import ptychostudy  # noqa: E402,F401  (first: its numerical pins must precede numpy and torch)


def _digest(value) -> list:
    import torch

    out = []
    for item in value if isinstance(value, (tuple, list)) else (value,):
        if isinstance(item, torch.Tensor):
            data = item.detach().cpu().resolve_conj().resolve_neg().contiguous()
            out.append([list(item.shape), str(item.dtype)[6:], hashlib.sha256(data.numpy().tobytes()).hexdigest()[:16]])
    return out


def recorder(records: list[dict]):
    """A dispatch mode that appends every aten operation it sees to ``records``."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Recorder(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            result = func(*args, **(kwargs or {}))
            records.append({"op": str(func.overloadpacket.__name__), "in": _digest(list(args)),
                            "out": _digest(result)})
            return result

    return Recorder()


def trace(dose: int, view: str, steps: int, threads: int | None) -> list[dict]:
    from ptychostudy import layout
    from ptychostudy.config import load_config
    from ptychostudy.params.train import architecture
    from ptychostudy.dataset import Split
    from ptychostudy.inference import setup_torch
    from ptychostudy.io import derive_seed
    from ptychostudy.training import Trainer

    cfg = load_config(ROOT / "params.yaml")
    t = cfg.train
    device = setup_torch(t.threads if threads is None else threads, "cpu")
    split = Split.read(layout.view_file(layout.view_dir("run1084", dose, view, ROOT), "train"), cfg.view(view).gridsize)
    trainer = Trainer(cfg, split, architecture(cfg, view, dose), derive_seed(t.seed, dose, view), device)
    opt = trainer.optimizer()
    batches = iter(list(trainer.device_batches(steps, t.batch_size, steps)))  # made before the trace starts
    records: list[dict] = []
    with recorder(records):
        for _ in range(steps):
            trainer.step(opt, next(batches))
    return records


def trace_ptychi(dose: int, view: str, epochs: int, threads: int | None) -> list[dict]:
    """``epochs`` epochs of the configured pty-chi arm (``ptychi``) on the view's test split, as the reconstruct
    stage runs them; the task is built before the trace starts, so the trace holds LSQML's own operations."""
    import torch

    from ptychostudy import layout
    from ptychostudy.config import load_config
    from ptychostudy.dataset import Split
    from ptychostudy.io import derive_seed
    from ptychostudy.ptychi_solver import build_task, ieee_sqrt, settings_of

    cfg = load_config(ROOT / "params.yaml")
    r = cfg.reconstruct
    torch.set_num_threads(r.threads if threads is None else threads)
    split = Split.read(layout.view_file(layout.view_dir("run1084", dose, view, ROOT), "test"), 1,
                       require_groups=cfg.view(view).gridsize > 1)
    setting, _, _ = settings_of(cfg, "ptychi", dose, view, None)
    seed = derive_seed(r.seed, dose, view) % (2**31)
    torch.manual_seed(seed)
    task = build_task(setting, r.batch_size, split, epochs, seed)
    records: list[dict] = []
    with ieee_sqrt(), recorder(records):
        task.run(n_epochs=epochs)
    return records


def compare(a: Path, b: Path) -> int:
    def load(path):
        with gzip.open(path, "rt") as f:
            lines = [json.loads(line) for line in f]
        return lines[0], lines[1:]

    (ma, ra), (mb, rb) = load(a), load(b)
    print(f"A: {ma}\nB: {mb}")
    for i, (x, y) in enumerate(zip(ra, rb)):
        if x["op"] != y["op"]:
            print(f"op {i}: the sequences part: {x['op']} vs {y['op']}")
            return 1
        if x["out"] != y["out"]:
            same_inputs = x["in"] == y["in"]
            print(f"op {i} of {len(ra)}: {x['op']} gives other bytes "
                  f"({'from the same inputs: this op is where they part' if same_inputs else 'its inputs differ too'})")
            print(f"  inputs {x['in']}\n  A out {x['out']}\n  B out {y['out']}")
            return 1
    print(f"all {min(len(ra), len(rb))} operations identical" + ("" if len(ra) == len(rb) else " (lengths differ)"))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dose", type=int, default=100000)
    p.add_argument("--view", default="dense")
    p.add_argument("--steps", type=int, default=1)
    p.add_argument("--ptychi", type=int, metavar="EPOCHS", default=None,
                   help="trace that many epochs of the configured pty-chi arm instead of training steps")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: train.threads, or reconstruct.threads with --ptychi)")
    p.add_argument("--out", type=Path, help="trace to write (.jsonl.gz)")
    p.add_argument("--compare", nargs=2, type=Path, metavar=("A", "B"), help="the first operation where two traces differ")
    a = p.parse_args(argv)
    if a.compare:
        return compare(*a.compare)
    if a.out is None:
        p.error("give --out FILE or --compare A B")
    from machine import machine  # noqa: E402  (bench/machine.py: the record every benchmark writes)

    import torch

    if a.ptychi is None:
        records, work = trace(a.dose, a.view, a.steps, a.threads), {"steps": a.steps}
    else:
        records, work = trace_ptychi(a.dose, a.view, a.ptychi, a.threads), {"ptychi_epochs": a.ptychi}
    head = {**machine(), "dose": a.dose, "view": a.view, **work, "threads": torch.get_num_threads(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "operations": len(records)}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    with gzip.GzipFile(a.out, "wb", mtime=0) as f:
        f.write("".join(json.dumps(r) + "\n" for r in [head, *records]).encode())
    print(f"{a.out}: {len(records)} operations ({head.get('cpu')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
