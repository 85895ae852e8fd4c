"""The scale-out driver measured: serial `dvc repro` against `python -m ptychostudy.scaleout`, and a real SLURM.

    python bench/scaleout.py --slurm            # the tiny profile through a single-node SLURM (needs root)
    python bench/scaleout.py --study            # the default study from scratch, serial then parallel
                                                # (two full runs: about 2 hours on 2 cores)
    python bench/scaleout.py --local-tiny       # the tiny profile, serial then parallel (a few minutes)

Each mode builds a fresh git + DVC repository from this checkout (the pipeline, params, base data and
code; nothing computed), runs the pipeline serially with `dvc repro`, then clones it and runs the same
pipeline with the driver, and compares the two dvc.lock files byte for byte. Results go into
bench/results.json ("slurm", "executor", "executor_tiny"; other entries kept). Run it alone: the
timings are wall times on a machine that must not be doing anything else.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import yaml  # noqa: E402

from conftest import tiny_params  # noqa: E402  (the tests' tiny profile: one definition)
from run import machine  # noqa: E402

RESULTS = ROOT / "bench" / "results.json"
SLURM_SH = ROOT / "bench" / "slurm.sh"


def env_for(tmp: Path) -> dict:
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env.update(DVC_NO_ANALYTICS="1", DVC_SITE_CACHE_DIR=str(tmp / "site-cache"), PYTHONPATH=str(ROOT / "src"),
               GIT_AUTHOR_NAME="bench", GIT_COMMITTER_NAME="bench",
               GIT_AUTHOR_EMAIL="bench@example.org", GIT_COMMITTER_EMAIL="bench@example.org")
    return env


def sh(args, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def make_repo(work: Path, env: dict, params: dict | None) -> None:
    """A fresh git + DVC repository with this checkout's pipeline, code and base data (``params``: None
    keeps the project's params.yaml)."""
    work.mkdir(parents=True)
    for name in ("dvc.yaml", ".gitignore", "requirements.lock.txt", "requirements.nodeps.txt"):
        shutil.copy(ROOT / name, work / name)
    shutil.copytree(ROOT / "data" / "base", work / "data" / "base")
    shutil.copytree(ROOT / "src", work / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    if params is None:
        shutil.copy(ROOT / "params.yaml", work / "params.yaml")
    else:
        (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(["git", "init", "-q", "-b", "main"], work, env)
    sh([sys.executable, "-m", "dvc", "init", "-q"], work, env)
    sh([sys.executable, "-m", "dvc", "config", "core.analytics", "false"], work, env)
    sh(["git", "add", "-A"], work, env)
    sh(["git", "commit", "-qm", "study"], work, env)


def serial_then_parallel(tmp: Path, params: dict | None, driver_args: list[str]) -> dict:
    env = env_for(tmp)
    serial = tmp / "serial"
    make_repo(serial, env, params)
    clone = tmp / "parallel"
    sh(["git", "clone", "-q", str(serial), str(clone)], tmp, env)
    # each repository runs its own copy of the code (so that this checkout may change meanwhile)
    env = {**env, "PYTHONPATH": str(serial / "src")}
    start = time.perf_counter()
    sh([sys.executable, "-m", "dvc", "repro"], serial, env)
    serial_seconds = time.perf_counter() - start
    cenv = {**env, "DVC_SITE_CACHE_DIR": str(tmp / "clone-site-cache"), "PYTHONPATH": str(clone / "src")}
    start = time.perf_counter()
    out = sh([sys.executable, "-m", "ptychostudy.scaleout", *driver_args], clone, cenv).stdout
    parallel_seconds = time.perf_counter() - start
    status = json.loads(sh([sys.executable, "-m", "dvc", "status", "--json"], clone, cenv).stdout)
    stages = len(yaml.safe_load((serial / "dvc.lock").read_text())["stages"])
    return {"serial_seconds": round(serial_seconds, 1), "parallel_seconds": round(parallel_seconds, 1),
            "ratio": round(parallel_seconds / serial_seconds, 3), "stages": stages,
            "lock_identical": (serial / "dvc.lock").read_bytes() == (clone / "dvc.lock").read_bytes(),
            "status_clean": status == {}, "driver": driver_args, "driver_summary": out.strip().splitlines()[-1]}


def slurm(tmp: Path) -> dict:
    daemons = tmp / "slurm"
    subprocess.run([str(SLURM_SH), "start", str(daemons)], check=True)
    try:
        config = tmp / "scaleout-slurm.yaml"
        config.write_text(yaml.safe_dump({"executor": "slurm", "slurm": {"queue": "debug", "walltime": "01:00:00",
                                                                        "max_blocks": 1}}))
        result = serial_then_parallel(tmp, tiny_params(), ["--config", str(config)])
        log = (daemons / "log" / "slurmctld.log").read_text(errors="replace")
        jobs = len(set(re.findall(r"JobId=(\d+)", log)))
    finally:
        subprocess.run([str(SLURM_SH), "stop", str(daemons)], check=False)
    return {"ok": result["lock_identical"] and result["status_clean"], "jobs": jobs,
            "seconds": result["parallel_seconds"], "serial_seconds": result["serial_seconds"],
            "stages": result["stages"], "lock_identical": result["lock_identical"],
            "profile": "tests' tiny profile", "machine": machine()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--slurm", action="store_true", help="the tiny profile through a real single-node SLURM")
    p.add_argument("--study", action="store_true", help="the default study, serial and parallel, from scratch")
    p.add_argument("--local-tiny", action="store_true", help="the tiny profile, serial and parallel")
    p.add_argument("--jobs", type=int, default=None, help="the driver's --jobs (default: as the cores allow)")
    p.add_argument("--keep", type=Path, help="keep the work folder here (default: a temporary one, removed)")
    a = p.parse_args(argv)
    if not (a.slurm or a.study or a.local_tiny):
        p.error("choose --slurm, --study or --local-tiny")
    driver = [] if a.jobs is None else ["--jobs", str(a.jobs)]
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    ok = True
    for mode, key in (("local_tiny", "executor_tiny"), ("study", "executor"), ("slurm", "slurm")):
        if not getattr(a, mode):
            continue
        tmp = Path(tempfile.mkdtemp(prefix=f"scaleout-{mode}-")) if a.keep is None else a.keep / mode
        tmp.mkdir(parents=True, exist_ok=True)
        try:
            if mode == "slurm":
                entry = slurm(tmp)
            else:
                entry = {**serial_then_parallel(tmp, tiny_params() if mode == "local_tiny" else None, driver),
                         "machine": machine()}
        finally:
            if a.keep is None:
                shutil.rmtree(tmp, ignore_errors=True)
        results[key] = entry
        RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
        print(f"{key}: {json.dumps({k: v for k, v in entry.items() if k != 'machine'})}", flush=True)
        ok = ok and entry.get("lock_identical", False)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
