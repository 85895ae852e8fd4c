"""The scale-out driver measured: serial `dvc repro` against `python -m ptychostudy.scaleout`, and a real SLURM.

    python bench/scaleout.py --slurm            # the tiny profile through a single-node SLURM (needs root)
    python bench/scaleout.py --study            # the default study from scratch, serial then parallel
                                                # (two full runs: about 2 hours on 2 cores)
    python bench/scaleout.py --local-tiny       # the tiny profile, serial then parallel (a few minutes)
    python bench/scaleout.py --forced           # this workspace's study forced twice, alone: `dvc repro -f`,
                                                # then `ptychostudy run -f` (about 2 hours on 2 cores)
    python bench/scaleout.py --forced --only parallel|serial   # one half of it (the other in a later run)
    python bench/scaleout.py --from-logs SERIAL PARALLEL [--parallel-first] [--label TEXT]
                                                # the same entry from two such runs' logs
    python bench/scaleout.py --bound LOG        # what any parallel run could reach, from a serial run's log

The three run modes build a fresh git + DVC repository from this checkout (the pipeline, params, base data and
code; nothing computed), runs the pipeline serially with `dvc repro`, then clones it and runs the same
pipeline with the driver, and compares the two dvc.lock files byte for byte. Results go into
bench/results.json ("slurm", "executor", "executor_tiny"; other entries kept). Run it alone: the
timings are wall times on a machine that must not be doing anything else.

The serial run's output is stamped line by line ("<clock> <seconds since start> <dvc's line>"), so each
stage's seconds are known; with the threads each stage asks for (``ptychostudy.scaleout.stage_threads``)
they give the core-seconds of the whole study, and core-seconds / cores is the shortest wall time any
schedule on those cores can reach if stages keep their serial speed ("bound" in each entry). ``--bound
LOG`` computes it from such a log of an earlier serial run (``dvc repro`` or ``dvc repro -f`` piped
through the same stamping) into results.json "executor_bound".

``--forced`` measures in this workspace instead of a fresh repository: both runs start from a complete,
recorded study and rerun every stage. The parallel run must leave dvc.lock byte-identical to the serial
run's; the serial run's lock is compared with the committed one (identical unless code or params changed
since: then it is the new lock, and the two runs are the check of a forced full rerun, twice in a row).
Both must leave ``dvc status`` clean. Each log ends with
the lines "RC <exit status> WALL <seconds>", "LOCK_IDENTICAL" or "LOCK_DIFFERS", and dvc status's
last line; ``--from-logs`` reads logs of that form (also gzipped) into the same "executor" entry.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
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
from machine import machine  # noqa: E402  (bench/machine.py: the record every benchmark writes)

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


STAGE_LINE = re.compile(r"^\d\d:\d\d:\d\d\s+([0-9.]+) Running stage '([^']+)':")
END_LINE = re.compile(r"^\d\d:\d\d:\d\d\s+([0-9.]+)( |$)")


def stamped_run(args, cwd: Path, env: dict, log_path: Path) -> float:
    """Run ``args``, writing each line of its output to ``log_path`` as "<clock> <seconds since start> <line>";
    returns the wall seconds. Raises RuntimeError (with the log's tail) on a non-zero exit status."""
    start = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log, subprocess.Popen(
            args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1) as proc:
        for line in proc.stdout:
            log.write(f"{time.strftime('%H:%M:%S')} {time.perf_counter() - start:9.1f} {line.rstrip()}\n")
        rc = proc.wait()
        seconds = time.perf_counter() - start
        log.write(f"{time.strftime('%H:%M:%S')} {seconds:9.1f} exit {rc}\n")
    if rc != 0:
        raise RuntimeError(f"{' '.join(map(str, args))} failed ({rc}); log: {log_path}\n"
                           + "\n".join(log_path.read_text().splitlines()[-30:]))
    return seconds


def read_log(path: Path) -> str:
    """A stamped log, plain or gzipped."""
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    return data.decode("utf-8", errors="replace")


def forced_run(args, log_path: Path, reference_lock: bytes) -> None:
    """One forced rerun of this workspace's pipeline, stamped into ``log_path``, followed by the lines
    --from-logs reads: RC and WALL, whether dvc.lock is byte-identical to ``reference_lock``, dvc status."""
    env = {**env_for(ROOT / ".dvc" / "tmp"), "DVC_SITE_CACHE_DIR": str(ROOT / ".dvc" / "tmp" / "site-cache")}
    rc, start = 0, time.perf_counter()
    try:
        stamped_run(args, ROOT, env, log_path)
    except RuntimeError:
        rc = 1
    seconds = time.perf_counter() - start
    same = (ROOT / "dvc.lock").read_bytes() == reference_lock
    status = subprocess.run([sys.executable, "-m", "dvc", "status"], cwd=ROOT, env=env, capture_output=True, text=True)
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"RC {rc} WALL {seconds:.1f}\n{'LOCK_IDENTICAL' if same else 'LOCK_DIFFERS'}\n")
        said = (status.stdout + status.stderr).strip().splitlines()
        log.write((said[-1] if said else "") + "\n")


def forced_entry(serial_text: str, parallel_text: str, cores: int, parallel_first: bool = False) -> dict:
    """The "executor" entry from the logs of a forced serial ``dvc repro -f`` and a forced ``ptychostudy run -f``
    of the same workspace, back to back (each log as ``forced_run`` writes it). ``parallel_first``: the
    parallel run came first and its dvc.lock was committed, so the serial run's comparison with the committed
    lock is the pair's check."""
    def tail(text: str) -> tuple[int, float, bool, bool]:
        m = re.search(r"^RC (\d+) WALL ([0-9.]+)$", text, re.M)
        if not m:
            raise ValueError("no \"RC <status> WALL <seconds>\" line: not a forced run's log")
        return int(m.group(1)), float(m.group(2)), "LOCK_IDENTICAL" in text, "Data and pipelines are up to date." in text

    s_rc, s_wall, s_same, s_clean = tail(serial_text)
    p_rc, p_wall, p_same, p_clean = tail(parallel_text)
    done = re.findall(r"done\s+(\S+)\s+(\d+) s$", parallel_text, re.M)
    summary = re.findall(r"(ptychostudy scale-out: \d+ ran.*)$", parallel_text, re.M)
    serial_stages = stage_seconds(serial_text)
    threads = pipeline_threads(ROOT)
    if parallel_first:
        method = ("forced reruns of this workspace's complete study, alone: `ptychostudy run -f` (its dvc.lock "
                  "committed), then `dvc repro -f` (its dvc.lock compared with the parallel run's)")
    else:
        method = ("forced reruns of this workspace's complete study, back to back, alone: `dvc repro -f` (its "
                  "dvc.lock compared with the committed one), then `ptychostudy run -f` (its dvc.lock compared "
                  "with the serial run's)")
    return {"method": method, "serial_seconds": s_wall, "parallel_seconds": p_wall, "ratio": round(p_wall / s_wall, 3),
            "rc": [s_rc, p_rc], "stages": len(serial_stages),
            "lock_identical": s_same if parallel_first else p_same, "serial_lock_as_committed": s_same,
            "status_clean": s_clean and p_clean,
            "parallel_stage_seconds_by_threads": seconds_by_threads({n: float(t) for n, t in done}, threads, cores),
            "driver_summary": summary[-1] if summary else None,
            "bound": parallel_bound(serial_stages, threads, cores)}


def stage_seconds(log_text: str) -> dict[str, float]:
    """Each stage's seconds in a stamped serial ``dvc repro`` log: from its "Running stage" line to the next
    one's (the last stage: to the log's last line), so DVC's own work between stages is counted too."""
    starts, last = [], 0.0
    for line in log_text.splitlines():
        m = STAGE_LINE.match(line)
        if m:
            starts.append((m.group(2), float(m.group(1))))
        m = END_LINE.match(line)
        if m:
            last = float(m.group(1))
    if not starts:
        raise ValueError("no \"Running stage\" line: not a stamped dvc repro log")
    ends = [t for _, t in starts[1:]] + [last]
    return {name: round(end - begin, 1) for (name, begin), end in zip(starts, ends)}


def seconds_by_threads(seconds: dict[str, float], threads: dict[str, int], cores: int) -> dict[str, float]:
    """Stage seconds summed by the threads each stage holds (capped at ``cores``)."""
    total: dict[str, float] = {}
    for name, t in seconds.items():
        key = str(min(threads[name], cores))
        total[key] = total.get(key, 0.0) + t
    return {k: round(v, 1) for k, v in sorted(total.items())}


def parallel_bound(seconds: dict[str, float], threads: dict[str, int], cores: int) -> dict:
    """The shortest wall time any schedule on ``cores`` cores can reach when every stage keeps its serial
    seconds and holds its threads' cores (capped at ``cores``) while it runs: core-seconds / cores."""
    unknown = sorted(set(seconds) - set(threads))
    if unknown:
        raise ValueError(f"stages not in the pipeline: {', '.join(unknown[:5])}")
    serial = sum(seconds.values())
    core_seconds = sum(min(threads[s], cores) * t for s, t in seconds.items())
    return {"cores": cores, "stages": len(seconds), "serial_stage_seconds": round(serial, 1),
            "core_seconds": round(core_seconds, 1), "seconds_by_threads": seconds_by_threads(seconds, threads, cores),
            "parallel_seconds_bound": round(core_seconds / cores, 1),
            "ratio_bound": round(core_seconds / cores / serial, 3)}


def pipeline_threads(repo_dir: Path) -> dict[str, int]:
    """Each stage's threads as the driver would give them (``ptychostudy.scaleout.plan``)."""
    from ptychostudy.scaleout import plan

    with contextlib.chdir(repo_dir):  # DVC reads the pipeline's targets relative to the working directory
        _, jobs = plan(repo_dir, [])
    return {j.name: j.threads for j in jobs}


def serial_then_parallel(tmp: Path, params: dict | None, driver_args: list[str]) -> dict:
    env = env_for(tmp)
    serial = tmp / "serial"
    make_repo(serial, env, params)
    clone = tmp / "parallel"
    sh(["git", "clone", "-q", str(serial), str(clone)], tmp, env)
    # each repository runs its own copy of the code (so that this checkout may change meanwhile)
    env = {**env, "PYTHONPATH": str(serial / "src")}
    serial_log = tmp / "serial-repro.log"
    serial_seconds = stamped_run([sys.executable, "-m", "dvc", "repro"], serial, env, serial_log)
    bound = parallel_bound(stage_seconds(serial_log.read_text()), pipeline_threads(serial), os.cpu_count() or 1)
    cenv = {**env, "DVC_SITE_CACHE_DIR": str(tmp / "clone-site-cache"), "PYTHONPATH": str(clone / "src")}
    start = time.perf_counter()
    out = sh([sys.executable, "-m", "ptychostudy.scaleout", *driver_args], clone, cenv).stdout
    parallel_seconds = time.perf_counter() - start
    status = json.loads(sh([sys.executable, "-m", "dvc", "status", "--json"], clone, cenv).stdout)
    stages = len(yaml.safe_load((serial / "dvc.lock").read_text())["stages"])
    return {"method": "from scratch in a fresh repository: `dvc repro`, then its clone with the driver",
            "serial_seconds": round(serial_seconds, 1), "parallel_seconds": round(parallel_seconds, 1),
            "ratio": round(parallel_seconds / serial_seconds, 3), "stages": stages,
            "lock_identical": (serial / "dvc.lock").read_bytes() == (clone / "dvc.lock").read_bytes(),
            "status_clean": status == {}, "driver": driver_args, "driver_summary": out.strip().splitlines()[-1],
            "bound": bound}


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
    p.add_argument("--forced", action="store_true",
                   help="this workspace's study forced twice (dvc repro -f, then ptychostudy run -f), alone")
    p.add_argument("--only", choices=("serial", "parallel"),
                   help="with --forced: run one of the two, its dvc.lock compared with the committed one (the "
                   "other half from another session or run: combine the two logs with --from-logs)")
    p.add_argument("--from-logs", type=Path, nargs=2, metavar=("SERIAL", "PARALLEL"),
                   help="the \"executor\" entry from the logs of two forced runs (as --forced writes them)")
    p.add_argument("--parallel-first", action="store_true",
                   help="with --from-logs: the parallel run came first (--only parallel, its lock committed, then "
                   "--only serial): the serial run's lock check is the pair's")
    p.add_argument("--label", help="with --from-logs: the entry's name in results.md's table")
    p.add_argument("--bound", type=Path, metavar="LOG",
                   help="a stamped log of a serial dvc repro of this checkout's pipeline: the parallel bound")
    p.add_argument("--jobs", type=int, default=None, help="the driver's --jobs (default: as the cores allow)")
    p.add_argument("--keep", type=Path, help="keep the work folder here (default: a temporary one, removed)")
    a = p.parse_args(argv)
    if not (a.slurm or a.study or a.local_tiny or a.bound or a.forced or a.from_logs):
        p.error("choose --slurm, --study, --local-tiny, --forced, --from-logs SERIAL PARALLEL or --bound LOG")
    driver = [] if a.jobs is None else ["--jobs", str(a.jobs)]
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    ok = True
    if a.forced or a.from_logs:
        if a.forced:
            committed = subprocess.run(["git", "show", "HEAD:dvc.lock"], cwd=ROOT, capture_output=True, check=True).stdout
            # the serial run against the committed lock (it differs where code or params changed since), the
            # parallel run against the lock the serial run left: the two runs must agree byte for byte
            logs = ROOT / "bench" / "logs"
            logs.mkdir(exist_ok=True)
            stamp = time.strftime("%Y%m%d-%H%M")
            serial_log, parallel_log = logs / f"forced-repro-{stamp}.log", logs / f"forced-run-{stamp}.log"
            if a.only != "parallel":
                forced_run([sys.executable, "-m", "dvc", "repro", "-f"], serial_log, committed)
                # the serial run's lock kept apart: dvc.lock itself is rewritten stage by stage by the parallel run
                (ROOT / ".dvc" / "tmp" / "forced-serial-dvc.lock").write_bytes((ROOT / "dvc.lock").read_bytes())
            if a.only != "serial":
                forced_run([sys.executable, "-m", "ptychostudy", "run", "-f", *driver], parallel_log,
                           committed if a.only else (ROOT / "dvc.lock").read_bytes())
            if a.only:
                print(f"forced {a.only} run: {serial_log if a.only == 'serial' else parallel_log}", flush=True)
                return 0
        else:
            serial_log, parallel_log = a.from_logs
        entry = {**forced_entry(read_log(serial_log), read_log(parallel_log), os.cpu_count() or 1,
                                parallel_first=a.parallel_first),
                 "logs": [str(serial_log), str(parallel_log)], "machine": machine()}
        if a.label:
            entry["label"] = a.label
        if results.get("executor", {}).get("logs") not in (None, entry["logs"]):
            results["executor_previous"] = results["executor"]  # the measurement it supersedes stays beside it
        results["executor"] = entry
        RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
        print(f"executor: {json.dumps({k: v for k, v in entry.items() if k != 'machine'})}", flush=True)
        ok = entry["lock_identical"] and entry["status_clean"]
    if a.bound:
        text = read_log(a.bound)
        m = re.search(r"WALL ([0-9.]+)", text)  # the serial run's own wall time, when its script wrote one
        entry = {**parallel_bound(stage_seconds(text), pipeline_threads(ROOT), os.cpu_count() or 1),
                 "log": str(a.bound), "serial_wall_seconds": float(m.group(1)) if m else None, "machine": machine()}
        results["executor_bound"] = entry
        RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
        print(f"executor_bound: {json.dumps({k: v for k, v in entry.items() if k != 'machine'})}", flush=True)
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
