"""The scale-out driver's config and plan (its runs through DVC and Parsl: tests/test_dvc_pipeline.py)."""

from __future__ import annotations

import pytest
import yaml

from conftest import ROOT
from ptychostudy import StudyError
from ptychostudy.scaleout import load_config, plan


def _write(tmp_path, data) -> object:
    path = tmp_path / "scaleout.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_shipped_configs_load_and_the_command_line_wins(tmp_path):
    local = load_config(ROOT / "profiles/scaleout.yaml")
    assert local.executor == "local" and local.jobs is None and local.core_budget() >= 1
    cluster = load_config(ROOT / "profiles/scaleout-slurm.yaml", jobs=3)
    assert cluster.executor == "slurm" and cluster.jobs == 3 and cluster.slurm["queue"] == "debug"
    assert cluster.slurm["training_gpus"] == 0 and cluster.core_budget() == cluster.slurm["max_blocks"] * (
        cluster.slurm["cores_per_node"] or __import__("os").cpu_count())
    assert load_config(ROOT / "profiles/scaleout-slurm.yaml", executor="local").executor == "local"
    assert load_config(None).executor == "local"


@pytest.mark.parametrize("data, message", [
    ({"executor": "kubernetes"}, "executor must be one of local, slurm, pbs"),
    ({"jobs": 0}, "jobs must be at least 1"),
    ({"jobs": "two"}, "jobs must be an integer"),
    ({"slurm": {"walltime": 3600}}, "slurm.walltime must be a string"),
    ({"slurm": {"partition": "debug"}}, "unknown key slurm.partition"),
    ({"pbs": {"training_gpus": -1}}, "pbs.training_gpus must be at least 0"),
    ({"cores": True}, "cores must be an integer"),
])
def test_a_bad_config_is_one_clear_sentence(tmp_path, data, message):
    with pytest.raises(StudyError, match=message):
        load_config(_write(tmp_path, data))


def test_the_plan_is_dvc_repros_order_with_each_stages_threads():
    _, jobs = plan(ROOT, [])
    names = [j.name for j in jobs]
    assert names[0] == "base" and names[-1] == "summarize"
    position = {n: i for i, n in enumerate(names)}
    for j in jobs:  # every stage after all it depends on
        assert all(position[u] < position[j.name] for u in j.upstream), j.name
    threads = {j.name.split("@")[0]: j.threads for j in jobs}
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert threads["train"] == params["train"]["threads"]
    assert threads["simulate"] == params["simulate"]["threads"]
    assert threads["reconstruct"] == params["reconstruct"]["threads"]
    assert threads["tune"] == params["tune"]["threads"]  # pty-chi and gradient runs alike: a single-threaded stage
    assert threads["refine"] == params["refine"]["threads"]
    assert next(j for j in jobs if j.name == "train@run1084-1000-dense").upstream == {"views@run1084-1000-dense"}


def test_ptychostudy_run_is_the_driver_with_its_own_help_and_errors(tmp_path):
    import subprocess
    import sys

    def run(*args):
        return subprocess.run([sys.executable, "-m", "ptychostudy", "run", *args], cwd=ROOT, capture_output=True,
                              text=True)

    shown = run("--help")
    assert shown.returncode == 0 and shown.stdout.startswith("usage: ptychostudy run")
    assert all(option in shown.stdout for option in ("--jobs", "--executor", "--config", "--dry", "--single-item"))
    bad = run("--config", str(_write(tmp_path, {"jobs": 0})))
    assert bad.returncode == 2, bad.stderr
    assert bad.stderr.strip().splitlines()[-1].startswith("ptychostudy run: error: ") and "jobs must be at least 1" in bad.stderr
    listed = subprocess.run([sys.executable, "-m", "ptychostudy", "--help"], capture_output=True, text=True).stdout
    assert "run" in listed.split("COMMAND")[1] and "several at a time" in listed


def _driver(*args, cwd):
    import subprocess
    import sys

    env = {**__import__("os").environ, "DVC_NO_ANALYTICS": "1"}
    return subprocess.run([sys.executable, "-m", "ptychostudy", "run", *args], cwd=cwd, capture_output=True, text=True,
                          env=env)


def _one_sentence(result, *words):
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert all(word in result.stderr for word in words), result.stderr


def test_a_mistyped_stage_is_one_sentence_naming_the_stages():
    _one_sentence(_driver("tranin", cwd=ROOT), "'tranin' is no stage", "stages: base, compare")
    _one_sentence(_driver("train@7", "--dry", cwd=ROOT), "'train@7' is no stage")


def _tiny_repo(tmp_path):
    import subprocess
    import sys

    (tmp_path / "dvc.yaml").write_text("stages:\n  hello:\n    cmd: echo hello > out.txt\n    outs:\n      - out.txt\n")
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=tmp_path, check=True,
                   env={**__import__("os").environ, "DVC_NO_ANALYTICS": "1"})
    return tmp_path


def test_a_second_run_in_one_workspace_is_refused_naming_the_first(tmp_path):
    import fcntl
    import os

    work = _tiny_repo(tmp_path)
    lock = work / ".dvc" / "tmp" / "ptychostudy-run.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as fh:  # this process plays the first run
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fh.write(str(os.getpid()))
        fh.flush()
        _one_sentence(_driver("--jobs", "1", cwd=work), f"another `ptychostudy run` (process {os.getpid()})")
    assert not (work / "out.txt").exists()  # nothing ran


def test_a_held_dvc_lock_is_one_sentence(tmp_path):
    from dvc.repo import Repo

    work = _tiny_repo(tmp_path)
    repo = Repo(str(work))
    with repo.lock:  # as during a `dvc repro` in this workspace
        _one_sentence(_driver("--dry", cwd=work), "DVC's lock on this workspace is held")
        _one_sentence(_driver("--jobs", "1", cwd=work), "DVC's lock on this workspace is held")
    assert not (work / "out.txt").exists()


def test_dry_lists_only_what_would_run(tmp_path):
    import subprocess
    import sys

    work = _tiny_repo(tmp_path)
    before = _driver("--dry", cwd=work)
    assert before.returncode == 0 and "1 of 1 stages would run" in before.stdout and "hello" in before.stdout
    subprocess.run([sys.executable, "-m", "dvc", "repro", "-q"], cwd=work, check=True, capture_output=True,
                   env={**__import__("os").environ, "DVC_NO_ANALYTICS": "1"})
    after = _driver("--dry", cwd=work)
    assert after.returncode == 0 and "0 of 1 stages would run" in after.stdout and "hello  threads" not in after.stdout


def test_the_docs_show_the_shipped_cluster_config():
    readme = (ROOT / "docs/scaleout.md").read_text()
    shipped = (ROOT / "profiles/scaleout-slurm.yaml").read_text()
    body = "".join(line + "\n" for line in shipped.splitlines() if not line.startswith("#"))
    assert f"```yaml\n{body}```" in readme
    assert "ptychostudy run" in readme and "profiles/scaleout.yaml" in readme


def test_a_local_stage_runs_in_the_root_and_waits_passively_only_when_asked(tmp_path):
    import os
    import subprocess

    from ptychostudy.scaleout import stage_command

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}

    def shell(passive):
        body = stage_command('echo "$PWD ${OMP_WAIT_POLICY:-default}"', str(tmp_path), passive=passive)
        return subprocess.run(["bash", "-c", body], env=env, capture_output=True, text=True, check=True).stdout.strip()

    assert shell(False) == f"{tmp_path} default"  # the cores the driver holds are the stage's own
    assert shell(True) == f"{tmp_path} PASSIVE"  # --passive: a machine shared with work the driver does not know
