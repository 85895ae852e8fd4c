"""The end-to-end tests' one tiny study: built once per test session, then copied for each module.

`study(tmp_path_factory)` returns (work, env, first_run) for a private copy of a git + DVC repository
holding the project's pipeline and the tiny profile at one dose, computed from scratch by the scale-out
driver (killed midway and resumed: `first_run` holds what each part saw). The build is the suite's
longest step and is paid once: conftest starts it in the background when the session begins (it runs
beside the unit modules; the end-to-end modules come last and wait for it), or else the first module to
ask builds it under a file lock; each module mutates only its own copy.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from conftest import ROOT, tiny_params as unit_params
from ptychostudy.demo import make_workspace


def tiny_params() -> dict:
    """The tests' tiny profile at one dose (the unit tests' second dose adds 40 stage processes to every
    full run here and proves nothing more about the pipeline: the doses are one matrix axis)."""
    params = unit_params()
    params["study"]["doses"] = [100000]
    return params


def env_for(tmp: Path) -> dict:
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env["DVC_NO_ANALYTICS"] = "1"
    env["DVC_SITE_CACHE_DIR"] = str(tmp / "dvc-site-cache")
    env["GIT_AUTHOR_NAME"] = env["GIT_COMMITTER_NAME"] = "test"
    env["GIT_AUTHOR_EMAIL"] = env["GIT_COMMITTER_EMAIL"] = "test@example.org"
    return env


def run(args, cwd, env, check=True):
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def dvc(*args, cwd, env, check=True):
    return run([sys.executable, "-m", "dvc", *args], cwd, env, check)


def scaleout(*args):
    return [sys.executable, "-m", "ptychostudy", "run", *args]  # the subcommand; `-m ptychostudy.scaleout` is the same


def started(output: str) -> set[str]:
    return {line.split()[1] for line in output.splitlines() if line.strip().startswith("start ")}


def status_stages(work, env) -> set[str]:
    return set(json.loads(dvc("status", "--json", cwd=work, env=env).stdout))


def lock_outs(work: Path) -> dict[str, str]:
    lock = yaml.safe_load((work / "dvc.lock").read_text())
    return {out["path"]: out["md5"] for stage in lock["stages"].values() for out in stage.get("outs", [])}


def verify(work: Path, env: dict):
    return run([sys.executable, "-m", "ptychostudy", "verify"], work, env, check=False)


def _from_scratch_killed_and_resumed(work: Path, env: dict) -> dict:
    """The Parsl driver on a repository with nothing computed, two stages at a time: killed (its whole
    process group, SIGKILL) once it has recorded ten stages (written 20 s apart: several per write), then run again
    to the end."""
    lock = work / "dvc.lock"
    assert not lock.exists()
    proc = subprocess.Popen(scaleout("--jobs", "2", "--record-seconds", "20"), cwd=work, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not (lock.is_file() and len((yaml.safe_load(lock.read_text()) or {}).get("stages", {})) >= 10):
            assert proc.poll() is None, proc.communicate()[0].decode()
            assert time.monotonic() < deadline, "the driver recorded too few stages in 5 minutes"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        killed = proc.communicate()[0].decode()
    recorded = sorted(yaml.safe_load(lock.read_text())["stages"])
    stale = sorted(status_stages(work, env))
    resumed = run(scaleout("--jobs", "2"), work, env)
    return {"killed": killed, "recorded": recorded, "stale": stale, "resumed": resumed.stdout}


def _build(folder: Path) -> None:
    work = folder / "study"
    env = env_for(folder)
    make_workspace(work, tiny_params(), env, ROOT)  # the workspace `make demo` runs in
    first = _from_scratch_killed_and_resumed(work, env)
    (folder / "first-run.json").write_text(json.dumps(first))


BUILD_DIR = "PTYCHOSTUDY_E2E_BUILD"  # set by conftest when it builds the study in the background


def _wait_for(built: Path, failed: Path, builder_log: Path) -> None:
    deadline = time.monotonic() + 1800
    while not (built / "first-run.json").exists():
        if failed.exists():
            raise AssertionError(f"building the tiny study failed:\n{failed.read_text()}")
        assert time.monotonic() < deadline, f"the tiny study was not built in 30 minutes (log: {builder_log})"
        time.sleep(0.5)


def build_once(shared: Path) -> None:
    """Build the study in ``shared`` unless another process has (or is building it: a file lock)."""
    built, failed = shared / "e2e-built", shared / "e2e-failed.txt"
    with open(shared / "e2e.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if failed.exists():
            raise AssertionError(f"building the tiny study failed in another process:\n{failed.read_text()}")
        if not (built / "first-run.json").exists():
            shutil.rmtree(built, ignore_errors=True)
            try:
                _build(built)
            except BaseException as exc:
                failed.write_text(f"{type(exc).__name__}: {exc}")
                raise


def study(tmp_path_factory) -> tuple[Path, dict, dict]:
    """A private copy of the session's one built tiny study: (work, env, first_run)."""
    if os.environ.get(BUILD_DIR):  # conftest started the build beside the unit tests: wait for it
        shared = Path(os.environ[BUILD_DIR])
        _wait_for(shared / "e2e-built", shared / "e2e-failed.txt", shared / "builder.log")
    else:
        shared = tmp_path_factory.getbasetemp()
        if os.environ.get("PYTEST_XDIST_WORKER"):
            shared = shared.parent  # the session's folder, above every worker's own
        build_once(shared)
    built = shared / "e2e-built"
    mine = tmp_path_factory.mktemp("e2e")
    shutil.copytree(built / "study", mine / "study", symlinks=True)
    return mine / "study", env_for(mine), json.loads((built / "first-run.json").read_text())


if __name__ == "__main__":  # conftest's background build: python tests/e2e.py <folder>
    build_once(Path(sys.argv[1]))
