"""The determinism harness (`make determinism`): each stage kind rerun in fresh processes, its outputs
compared byte for byte.

On the tests' tiny profile (tests/conftest.py: tiny_params) at dose 1e5, the dense view, it prepares
the inputs once and then runs, each in its own fresh `ptychostudy` process exactly as DVC runs the stage:

- simulate: Phase C (both data files, the JSON of facts, the figure), ``--simulate`` runs;
- train: Phase E (bundle, job record, history, figure), ``--train`` runs;
- reconstruct: Phase F's pty-chi stage (object file, record) with LSQML momentum ``RECONSTRUCT_MOMENTUM``
  and compact batches for ``RECONSTRUCT_EPOCHS`` epochs (the path that once diverged at epoch 7, and the
  one the tune stage and the tuned arm run; the arm ``ptychi`` itself now runs without momentum),
  ``--reconstruct`` runs.

Timing files are the only outputs left out (they hold wall times and are no DVC output). A run is
"identical" when every output's SHA-256 equals that of the most common outcome. ``--jobs`` runs that
many processes at once: the harness also checks that the scheduling of a busy machine changes nothing.
Writes the "determinism" entry of bench/results.json (other entries kept) and prints a table.

    python bench/determinism.py                     # 20 simulate, 100 train, 100 reconstruct runs
    python bench/determinism.py --train 10 --reconstruct 10 --simulate 4   # a quick look
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import yaml  # noqa: E402

from conftest import OBJECT, PROBE, tiny_params  # noqa: E402  (the tests' tiny profile: one definition)
from machine import machine  # noqa: E402  (bench/machine.py: the record every benchmark writes)

DOSE = 100000
VIEW = "dense"
RECONSTRUCT_EPOCHS = 12
RECONSTRUCT_MOMENTUM = 0.5  # the momentum path (the tune stage and ptychi_tuned); the arm ptychi runs with 0
RESULTS = ROOT / "bench" / "results.json"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ptychostudy(*args: str, cwd: Path) -> None:
    """One stage command in a fresh process (the venv's interpreter, this checkout's code)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    result = subprocess.run([sys.executable, "-m", "ptychostudy", "--no-progress", *args], cwd=cwd, env=env,
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"ptychostudy {' '.join(args[:1])} failed (rc {result.returncode}):\n{result.stderr[-3000:]}")


def prepare(work: Path) -> None:
    """params.yaml of the harness and the inputs every run shares (base, the simulated dose, the view)."""
    params = tiny_params()
    params["reconstruct"]["epochs"][VIEW] = RECONSTRUCT_EPOCHS
    params["reconstruct"]["momentum"] = RECONSTRUCT_MOMENTUM
    path = work / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    ptychostudy("base", "--params", str(path), "--probe", str(PROBE), "--object-file", f"run1084={OBJECT}", "--out-dir", ".", cwd=work)
    ptychostudy("simulate", "--params", str(path), "--object", "run1084", "--dose", str(DOSE), "--base", "run1084.npz", "--out-dir", "sim",
                "--report", "sim.json", "--figure", "sim.png", cwd=work)
    ptychostudy("views", "--params", str(path), "--object", "run1084", "--dose", str(DOSE), "--view", VIEW, "--sim-dir", "sim",
                "--out-dir", "view", "--report", "view-report.json", "--figure", "view.png", cwd=work)


def run_dir(work: Path, kind: str, k: int) -> Path:
    """A run's own folder, where the shared inputs appear under the same names for every run (links): the
    command line, and so every path a record holds, is the same in each run."""
    folder = work / kind / str(k)
    folder.mkdir(parents=True)
    for name in ("params.yaml", "run1084.npz", "view"):
        (folder / name).symlink_to(work / name)
    return folder


def digests(folder: Path) -> dict[str, str]:
    return {p.name: sha256(p) for p in sorted((folder / "out").iterdir())}


def run_simulate(work: Path, k: int) -> dict[str, str]:
    d = run_dir(work, "simulate", k)
    ptychostudy("simulate", "--params", "params.yaml", "--object", "run1084", "--dose", str(DOSE), "--base", "run1084.npz", "--out-dir", "out",
                "--report", "out/facts.json", "--figure", "out/figure.png", cwd=d)
    return digests(d)


def run_train(work: Path, k: int) -> dict[str, str]:
    d = run_dir(work, "train", k)
    ptychostudy("train", "--params", "params.yaml", "--object", "run1084", "--dose", str(DOSE), "--view", VIEW, "--view-dir", "view",
                "--bundle", "out/wts.h5.zip", "--report", "out/record.json", "--history", "out/history.csv",
                "--figure", "out/figure.png", "--timing", "timing.json", cwd=d)
    return digests(d)


def run_reconstruct(work: Path, k: int) -> dict[str, str]:
    d = run_dir(work, "reconstruct", k)
    ptychostudy("reconstruct", "--params", "params.yaml", "--arm", "ptychi", "--object", "run1084", "--dose", str(DOSE), "--view", VIEW,
                "--view-dir", "view", "--out", "out/ptychi.npz", "--report", "out/record.json", "--timing", "timing.json",
                cwd=d)
    return digests(d)


KINDS = {"simulate": run_simulate, "train": run_train, "reconstruct": run_reconstruct}


def measure(kind: str, runs: int, jobs: int, work: Path) -> dict:
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        digests = list(pool.map(lambda k: KINDS[kind](work, k), range(runs)))
    outcomes = collections.Counter(json.dumps(d, sort_keys=True) for d in digests)
    common, identical = outcomes.most_common(1)[0]
    differing = sorted({name for d in digests for name, h in d.items() if h != json.loads(common)[name]})
    return {"runs": runs, "identical": identical, "distinct_outcomes": len(outcomes), "outputs": sorted(json.loads(common)),
            "differing_outputs": differing, "seconds": round(time.perf_counter() - start, 1)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--simulate", type=int, default=20, help="fresh-process runs of Phase C (default 20)")
    p.add_argument("--train", type=int, default=100, help="fresh-process runs of Phase E (default 100)")
    p.add_argument("--reconstruct", type=int, default=100, help="fresh-process runs of Phase F's pty-chi (default 100)")
    p.add_argument("--jobs", type=int, default=2, help="processes at once (default 2)")
    p.add_argument("--keep", type=Path, help="keep the work folder here (default: a temporary one, removed)")
    p.add_argument("--no-write", action="store_true", help="print only; leave bench/results.json as it is")
    a = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="determinism-")) if a.keep is None else a.keep
    work.mkdir(parents=True, exist_ok=True)
    try:
        prepare(work)
        result = {}
        for kind in KINDS:
            runs = getattr(a, kind)
            if runs:
                result[kind] = measure(kind, runs, a.jobs, work)
                r = result[kind]
                print(f"{kind:12s} {r['identical']:4d} of {r['runs']:4d} identical, {r['distinct_outcomes']} outcome(s)"
                      f"{', differing: ' + ', '.join(r['differing_outputs']) if r['differing_outputs'] else ''}"
                      f" ({r['seconds']:.0f} s)", flush=True)
    finally:
        if a.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    result["machine"] = {**machine(), "jobs": a.jobs}
    result["profile"] = (f"tests' tiny profile, dose {DOSE}, view {VIEW}; pty-chi LSQML momentum "
                         f"{RECONSTRUCT_MOMENTUM}, {RECONSTRUCT_EPOCHS} epochs")
    if not a.no_write:
        results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
        results["determinism"] = result
        RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    all_identical = all(r["identical"] == r["runs"] for k, r in result.items() if k in KINDS)
    return 0 if all_identical else 1


if __name__ == "__main__":
    sys.exit(main())
