"""End to end through the `dvc` command line, in a temporary git repository (tiny profile)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import hashlib

import pytest
import yaml

from conftest import ROOT, tiny_params as unit_params, write_params


def tiny_params() -> dict:
    """The tests' tiny profile at one dose (the unit tests' second dose adds 40 stage processes to every
    full run here and proves nothing more about the pipeline: the doses are one matrix axis)."""
    params = unit_params()
    params["study"]["doses"] = [100000]
    return params


def _env(tmp: Path) -> dict:
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env["DVC_NO_ANALYTICS"] = "1"
    env["DVC_SITE_CACHE_DIR"] = str(tmp / "dvc-site-cache")
    env["GIT_AUTHOR_NAME"] = env["GIT_COMMITTER_NAME"] = "test"
    env["GIT_AUTHOR_EMAIL"] = env["GIT_COMMITTER_EMAIL"] = "test@example.org"
    return env


def _run(args, cwd, env, check=True):
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def dvc(*args, cwd, env, check=True):
    return _run([sys.executable, "-m", "dvc", *args], cwd, env, check)


def _scaleout(*args):
    return [sys.executable, "-m", "ptychostudy", "run", *args]  # the subcommand; `-m ptychostudy.scaleout` is the same


def _started(output: str) -> set[str]:
    return {line.split()[1] for line in output.splitlines() if line.strip().startswith("start ")}


FIRST_RUN: dict = {}  # what the fixture's from-scratch run saw, for the tests that check it


def _run_from_scratch_killed_and_resumed(work: Path, env: dict) -> dict:
    """The Parsl driver on a repository with nothing computed, two stages at a time: killed (its whole
    process group, SIGKILL) once it has recorded ten stages, then run again to the end."""
    import signal
    import time

    lock = work / "dvc.lock"
    assert not lock.exists()
    proc = subprocess.Popen(_scaleout("--jobs", "2"), cwd=work, env=env, stdout=subprocess.PIPE,
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
    recorded = set(yaml.safe_load(lock.read_text())["stages"])
    stale = set(json.loads(dvc("status", "--json", cwd=work, env=env).stdout))
    resumed = _run(_scaleout("--jobs", "2"), work, env)
    return {"killed": killed, "recorded": recorded, "stale": stale, "resumed": resumed.stdout}


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A fresh git + DVC repository holding the project's pipeline and a tiny params.yaml, computed from
    scratch by the scale-out driver (killed midway and resumed: `FIRST_RUN`). Its dvc.lock is the one the
    serial `dvc repro` writes: `test_forced_repro_...` reruns one stage of every kind serially."""
    tmp = tmp_path_factory.mktemp("e2e")
    work = tmp / "study"
    work.mkdir()
    for name in ("dvc.yaml", ".gitignore", "requirements.lock.txt", "requirements.nodeps.txt"):
        shutil.copy(ROOT / name, work / name)
    shutil.copytree(ROOT / "data" / "base", work / "data" / "base")
    shutil.copytree(ROOT / "src", work / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    write_params(work / "params.yaml", tiny_params())
    env = _env(tmp)
    _run(["git", "init", "-q", "-b", "main"], work, env)
    dvc("init", "-q", cwd=work, env=env)
    dvc("config", "core.analytics", "false", cwd=work, env=env)
    _run(["git", "add", "-A"], work, env)
    _run(["git", "commit", "-qm", "tiny study"], work, env)
    FIRST_RUN.update(_run_from_scratch_killed_and_resumed(work, env))
    return work, env


def test_repro_runs_every_stage_and_leaves_status_clean(repo):
    work, env = repo
    started = _started(FIRST_RUN["killed"]) | _started(FIRST_RUN["resumed"])
    locked = set(yaml.safe_load((work / "dvc.lock").read_text())["stages"])
    assert locked <= started, locked - started
    for stage in ("base", "simulate@100000", "views@100000-dense", "views@100000-sparse", "train_figure@100000-dense",
                  "tune_figure@100000-sparse", "infer@100000-dense", "summarize", "measured_compare"):
        assert stage in locked, stage
    for path in (
        "data/simulated/dose_100000/patched_train.npz",
        "data/simulated/dose_100000/patched_test.npz",
        "data/views/dose_100000/dense/train.npz",
        "data/train/dose_100000/dense.npz",
        "reports/train/dose_100000-dense.png",
        "reports/tuning/dose_100000-dense.png",
        "data/infer/dose_100000/dense.npz",
        "data/views/dose_100000/baseline/test.npz",
        "reports/metrics.json",
        "reports/skip_summary.json",
        "reports/summary.md",
    ):
        assert (work / path).is_file(), path
    assert json.loads(dvc("status", "--json", cwd=work, env=env).stdout) == {}
    metrics = json.loads((work / "reports/metrics.json").read_text())
    shown = dvc("metrics", "show", cwd=work, env=env).stdout
    assert "dose_100000.dense.pinn.phase_r" in shown and "dose_100000.baseline.train.final_loss" in shown
    # Phases F and G: every cell of every view with its arms, and the study's tables and plots
    for dose in (100000,):
        for view in ("baseline", "dense", "sparse"):
            for arm in ("ptychi", "ptychi_tuned", "gradient", "pinn_refined"):
                assert (work / f"data/reconstruct/dose_{dose}/{view}/{arm}.npz").is_file()
            assert (work / f"reports/tuning/dose_{dose}-{view}.json").is_file()
            record = json.loads((work / f"reports/compare/dose_{dose}-{view}/comparison.json").read_text())
            if not record["skipped"]:
                assert record["arms"][-4:] == ["ptychi", "ptychi_tuned", "gradient", "blank"]
                assert "pinn_refined" in record["arms"]  # every view refines its own network
                assert (len(record["arms"]) == 7) == (view != "baseline")
                assert (work / f"reports/compare/dose_{dose}-{view}/comparison.png").is_file()
    # ptychodus product files: every arm with an object, the object and positions as the study has them
    from ptychostudy.stored import read_reconstruction
    from ptychostudy.npz import read_npz
    from ptychostudy.product import read_product

    for dose in (100000,):
        index = json.loads((work / f"data/products/dose_{dose}/dense/products.json").read_text())
        assert set(index["files"]) == {f"{a}.h5" for a in ("pinn", "pinn_refined", "pinn_gs1", "ptychi", "ptychi_tuned",
                                                           "gradient")}
        test = read_npz(work / f"data/views/dose_{dose}/dense/test.npz", "view")
        for name in index["files"]:
            product = read_product(work / f"data/products/dose_{dose}/dense/{name}")
            obj, attrs = product["object"][0], product["object.attrs"]
            height, width = obj.shape
            x = (product["probe_position_x_m"] - attrs["center_x_m"]) / attrs["pixel_width_m"] + (width - 1) / 2
            y = (product["probe_position_y_m"] - attrs["center_y_m"]) / attrs["pixel_height_m"] + (height - 1) / 2
            assert abs(x - test["xcoords"]).max() < 1e-9 and abs(y - test["ycoords"]).max() < 1e-9, name
            assert len(product["loss_values"]) == len(product["loss_epochs"]) > 0
            if name.startswith("ptychi"):
                assert (obj == read_reconstruction(work / f"data/reconstruct/dose_{dose}/dense/{name[:-3]}.npz")[0]).all()
    # the headline numbers only, nested dose -> view -> arm: per arm phase r, phase FRC½, amplitude r; per job
    # the final loss and the bundle's size (every metric of every cell is in study_metrics.csv)
    for dose_metrics in metrics.values():
        for view, cell in dose_metrics.items():
            assert set(cell) <= {"pinn", "pinn_refined", "pinn_gs1", "ptychi", "ptychi_tuned", "gradient", "blank",
                                 "train"}, cell
            assert {"blank", "ptychi_tuned", "gradient", "pinn_refined"} <= set(cell), cell
            assert set(cell["train"]) == {"final_loss", "bundle_bytes"}
            for arm in set(cell) - {"train"}:
                assert set(cell[arm]) - {"phase_r_seeds", "phase_r_seed_sd"} == {"phase_r", "phase_frc50_px", "amplitude_r"}
    assert "ptychi" in metrics["dose_100000"]["baseline"]
    # the seed-to-seed spread of the replicated cell (tiny profile: dense at 1e5, one other seed): every arm
    replicated = json.loads((work / "reports/replicate/dose_100000-dense.json").read_text())
    assert set(replicated["arms"]) == {"pinn", "ptychi", "ptychi_tuned", "gradient"}
    for arm in replicated["arms"]:
        assert metrics["dose_100000"]["dense"][arm]["phase_r_seeds"] == 2
    assert not (work / "reports/replicate/dose_100000-sparse.json").exists()  # replicate.views: dense only
    summary = (work / "reports/summary.md").read_text()
    assert "## Phase G" in summary and "## Conclusion" in summary and "figures/metrics_vs_dose.png" in summary
    assert "| floor |" in summary and "skill" in summary  # every headline measure beside its floor
    assert "## Selection (tune stage)" in summary and "tuned iterative" in summary
    assert "## Seed-to-seed spread (replicate stage)" in summary and "measured (replicate stage, 2 seeds)" in summary
    header = (work / "reports/plots/phase_pearson_r.csv").read_text().splitlines()[0].split(",")
    plotted = yaml.safe_load((work / "dvc.yaml").read_text())["plots"]
    for entry in plotted:
        (path, spec), = entry.items()
        assert header == ["dose"] + spec["y"], path
    html = dvc("plots", "show", "-o", str(work.parent / "plots-html"), cwd=work, env=env)
    assert html.returncode == 0 and (work.parent / "plots-html" / "index.html").is_file()
    lock = (work / "dvc.lock").read_text()
    assert "data/simulated/dose_100000/patched_train.npz" in lock and "md5:" in lock
    # the measured Siemens star: pty-chi per half, the network, the agreement report, all in dvc.lock
    for path in ("data/measured/ptychi_A.npz", "data/measured/ptychi_B.npz", "data/measured/pinn.h5.zip",
                 "data/measured/pinn.npz", "reports/measured/measured.json", "reports/measured/measured.png"):
        assert (work / path).is_file() and path in lock, path
    measured = json.loads((work / "reports/measured/measured.json").read_text())
    assert measured["pairs"]["ptychi_A_vs_ptychi_B"]["phase_r"] > measured["pairs"]["blank_vs_ptychi_B"]["phase_r"]
    assert "reports/measured/measured.json" in shown  # a metrics file of its own (`dvc metrics show`)


def _lock_outs(work: Path) -> dict[str, str]:
    lock = yaml.safe_load((work / "dvc.lock").read_text())
    return {out["path"]: out["md5"] for stage in lock["stages"].values() for out in stage.get("outs", [])}


def test_every_bundle_is_locked_and_listed_with_its_sha256(repo):
    work, env = repo
    outs = _lock_outs(work)
    bundles = {p: md5 for p, md5 in outs.items() if p.endswith("wts.h5.zip")}
    expected = {f"data/models/dose_100000/{v}/wts.h5.zip" for v in ("baseline", "dense", "sparse")}
    assert set(bundles) == expected
    for path, md5 in bundles.items():
        assert hashlib.md5((work / path).read_bytes()).hexdigest() == md5
    manifest = json.loads((work / "reports/training_manifest.json").read_text())
    listed = {f"{manifest['artifact_dir']}/{job['bundle']}": job["sha256"] for job in manifest["jobs"]}
    skipped = {(s["dose"], s["view"]) for s in manifest["skipped"]}
    assert len(listed) + len(skipped) == 3
    for path, sha in listed.items():
        assert len(sha) == 64 and sha == hashlib.sha256((work / path).read_bytes()).hexdigest()
    assert "train" in json.loads((work / "reports/metrics.json").read_text())["dose_100000"]["dense"]


def test_forced_repro_leaves_dvc_lock_and_every_bundle_byte_identical(repo):
    """One stage of every kind forced to rerun serially (`dvc repro -f -s`, no run cache) over the scale-out
    driver's results: dvc.lock and the bundles stay byte-identical, so the driver records what the serial
    `dvc repro` does and every kind's outputs are reproducible. (A forced rerun of all 44 stages proves no
    more per stage kind and doubles the module's time.)"""
    work, env = repo
    before = (work / "dvc.lock").read_bytes()
    bundles = {p: p.read_bytes() for p in (work / "data/models").rglob("wts.h5.zip")}
    bundles[work / "data/measured/pinn.h5.zip"] = (work / "data/measured/pinn.h5.zip").read_bytes()
    stages = ["base", "simulate@100000", "views@100000-dense", "train@100000-dense", "train_figure@100000-dense",
              "tune@100000-dense", "tune_figure@100000-dense", "reconstruct@100000-dense",
              "reconstruct_tuned@100000-dense", "gradient@100000-dense", "refine@100000-dense",
              "replicate@100000-dense", "infer@100000-dense", "compare@100000-dense", "product@100000-dense",
              "summarize", "measured_ptychi@A", "measured_pinn", "measured_compare"]
    result = dvc("repro", "-f", "-s", "--no-run-cache", *stages, cwd=work, env=env)
    ran = {line.split("'")[1] for line in result.stdout.splitlines() if line.startswith("Running stage")}
    assert ran == set(stages), ran
    assert (work / "dvc.lock").read_bytes() == before
    assert all(path.read_bytes() == data for path, data in bundles.items())
    assert json.loads(dvc("status", "--json", cwd=work, env=env).stdout) == {}


def test_scaleout_from_scratch_killed_and_resumed_records_only_finished_stages(repo):
    """The fixture's run (the driver from scratch, killed midway): it had recorded only stages whose
    outputs were complete; the next run did only the rest and recorded them without DVC's per-stage
    chatter. (That its dvc.lock is the serial one: the forced serial rerun above.)"""
    work, env = repo
    recorded, stale = FIRST_RUN["recorded"], FIRST_RUN["stale"]
    assert "summarize" not in recorded, FIRST_RUN["killed"]  # killed midway
    assert stale and not (stale & recorded), (stale & recorded)  # nothing recorded with partial outputs
    resumed = FIRST_RUN["resumed"]
    assert not (_started(resumed) & recorded), resumed  # the next run does only what is missing
    assert _started(resumed) and "0 failed, 0 skipped" in resumed, resumed
    assert "Updating lock file" not in resumed  # DVC's line per recorded stage is left out
    assert json.loads(dvc("status", "--json", cwd=work, env=env).stdout) == {}


def test_scaleout_a_failing_cell_lets_the_others_finish_and_is_reported_with_its_log(repo, tmp_path):
    work, env = repo
    serial = (work / "dvc.lock").read_bytes()
    failing, other = ("train@100000-sparse", "--dose 100000 --view sparse"), "train@100000-dense"
    for cell in ("100000/sparse", "100000/dense"):
        (work / f"data/models/dose_{cell}/wts.h5.zip").unlink()  # both stale now
    shim = tmp_path / "shim"
    shim.mkdir()
    # a `python` that fails the one training job (stage commands run `python -m ptychostudy.<module>`)
    (shim / "python").write_text(f'#!/bin/sh\ncase "$*" in *"ptychostudy.train {failing[1]} "*) '
                                 f'echo "injected failure" >&2; exit 3;; esac\nexec {sys.executable} "$@"\n')
    (shim / "python").chmod(0o755)
    failing_env = {**env, "PATH": f"{shim}{os.pathsep}{env['PATH']}"}
    result = _run(_scaleout("--jobs", "2"), work, failing_env, check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"FAILED {failing[0]}" in result.stdout and "injected failure" in result.stdout
    log = next(line.split("(log: ")[1].rstrip(")") for line in result.stdout.splitlines()
               if line.strip().startswith(f"failed: {failing[0]}"))
    assert "injected failure" in Path(log).read_text()
    assert f"done   {other}" in result.stdout  # the other cell finished ...
    assert "skipped: summarize" in result.stdout  # ... and what needs the failed one waited
    stale = set(json.loads(dvc("status", "--json", cwd=work, env=env).stdout))
    assert failing[0] in stale and other not in stale, stale  # ... and was recorded
    again = _run(_scaleout("--jobs", "2"), work, env)
    assert _started(again.stdout) == {failing[0]}, again.stdout
    assert (work / "dvc.lock").read_bytes() == serial
    assert json.loads(dvc("status", "--json", cwd=work, env=env).stdout) == {}


def test_a_views_param_change_touches_only_views_and_params_diff_names_it(repo):
    work, env = repo
    _run(["git", "add", "-A"], work, env)
    _run(["git", "commit", "-qm", "results"], work, env)
    params = tiny_params()
    params["views"]["neighbours"] = 8
    write_params(work / "params.yaml", params)
    try:
        changed = json.loads(dvc("status", "--json", cwd=work, env=env).stdout)
        # the views and the measured network (it forms its groups as Phase D does)
        assert changed and all(name.startswith("views@") or name == "measured_pinn" for name in changed), changed
        assert "measured_pinn" in changed
        diff = dvc("params", "diff", cwd=work, env=env).stdout
        assert "views.neighbours" in diff and "7" in diff and "8" in diff
    finally:
        write_params(work / "params.yaml", tiny_params())


def _status_stages(work, env) -> set[str]:
    return set(json.loads(dvc("status", "--json", cwd=work, env=env).stdout))


def params_default(section: str, key: str):
    return tiny_params()[section][key]


def test_what_each_params_section_touches(repo):
    """Each section reruns only its own phase: training keys the training jobs, the networks' stitching
    (infer.*) only the comparisons and the product files (both infer), pty-chi's keys only pty-chi."""
    work, env = repo
    _run(["git", "add", "-A"], work, env)
    _run(["git", "commit", "-qm", "results", "--allow-empty"], work, env)
    cells = {f"100000-{v}" for v in ("baseline", "dense", "sparse")}
    spread = {"replicate@100000-dense"}  # the replicated cell reruns whatever arm a key reaches
    for section, key, value, stages in (
        ("train", "learning_rate", 0.0015, {f"train@{c}" for c in cells} | spread | {"measured_pinn"}),
        ("infer", "stitch_fraction", 0.4,  # the infer stage; the comparison and products read its objects
         {f"{s}@{c}" for c in cells for s in ("infer", "refine")} | spread | {"measured_pinn"}),
        ("reconstruct", "momentum", 0.3, {f"reconstruct@{c}" for c in cells} | spread),
        ("gradient", "learning_rate", 0.04, {f"{s}@{c}" for c in cells for s in ("tune", "gradient")} | spread),
        ("gradient", "threads", 2, {f"gradient@{c}" for c in cells} | spread),  # the tune stage runs on tune.threads
        ("tune", "threads", 2, {f"tune@{c}" for c in cells}),
        ("refine", "learning_rate", 0.002, {f"refine@{c}" for c in cells}),
        ("refine", "steps", {"baseline": 4, "dense": 3, "sparse": 4}, {"refine@100000-dense"}),
        ("compare", "frc_taper", 0.2, {f"{s}@{c}" for c in cells for s in ("compare", "refine")} | spread
         | {"measured_compare"}),
        ("replicate", "seeds", 2, spread | {"summarize"}),
        ("measured", "epochs", 2, {"measured_pinn"}),
        ("measured", "batch_size", 32, {"measured_ptychi@A", "measured_ptychi@B"}),
    ):
        params = tiny_params()
        params[section][key] = value
        write_params(work / "params.yaml", params)
        try:
            assert _status_stages(work, env) == stages, (section, key)
            if not isinstance(value, dict) and section != "train":
                continue  # `dvc params diff` names a scalar key alike for every section: shown for train's
            diff = dvc("params", "diff", cwd=work, env=env).stdout
            changed = {f"{key}.{k}": v for k, v in value.items() if v != params_default(section, key)[k]} \
                if isinstance(value, dict) else {key: value}  # a per-view key: DVC names the changed leaf
            assert all(f"{section}.{k}" in diff and str(v) in diff for k, v in changed.items()), diff
        finally:
            write_params(work / "params.yaml", tiny_params())
    assert _status_stages(work, env) == set()


def test_an_experiment_reruns_only_the_stages_its_params_reach(repo):
    """`dvc exp run -S` on one view's epochs: that view's training jobs, what reads their bundles (refinement,
    inference, and from its objects the comparisons and product files) and the summary run; nothing else (not the
    other views' networks or comparisons, not pty-chi). What the other sections reach is checked above with
    `dvc status`. A bundle records only the params its stage declares: in the experiment's workspace a forced
    rerun of another view's training leaves dvc.lock byte-identical."""
    work, env = repo
    _run(["git", "add", "-A"], work, env)
    _run(["git", "commit", "-qm", "results", "--allow-empty"], work, env)
    try:
        result = dvc("exp", "run", "-S", "train.epochs.dense=1", cwd=work, env=env)
        ran = {line.split("'")[1] for line in result.stdout.splitlines() if line.startswith("Running stage")}
        lock = (work / "dvc.lock").read_bytes()
        forced = dvc("repro", "-f", "-s", "--no-run-cache", "train@100000-sparse", cwd=work, env=env)
        assert "Running stage 'train@100000-sparse'" in forced.stdout
        assert (work / "dvc.lock").read_bytes() == lock
    finally:
        _run(["git", "checkout", "--", "."], work, env)  # the experiment is kept by `dvc exp`, not in the workspace
        dvc("checkout", cwd=work, env=env)
    assert ran == {"train@100000-dense", "train_figure@100000-dense", "refine@100000-dense", "infer@100000-dense",
                   "compare@100000-dense", "product@100000-dense", "replicate@100000-dense", "summarize"}, ran
    assert _status_stages(work, env) == set()


def test_bad_params_fail_the_repro_and_keep_previous_outputs(repo):
    work, env = repo
    target = work / "data/simulated/dose_100000/patched_train.npz"
    before = target.read_bytes()
    params = tiny_params()
    params["simulate"]["seed"] = 7
    params["simulate"]["sede"] = 7
    write_params(work / "params.yaml", params)
    try:
        result = dvc("repro", "simulate@100000", cwd=work, env=env, check=False)
        assert result.returncode != 0
        assert "unknown key simulate.sede" in result.stderr + result.stdout
    finally:
        write_params(work / "params.yaml", tiny_params())
    # DVC removes a stage's outputs before running it: the cache restores the data and git the
    # (git-tracked) reports, byte for byte
    dvc("checkout", cwd=work, env=env)
    _run(["git", "checkout", "--", "reports"], work, env)
    assert target.read_bytes() == before
    assert json.loads(dvc("status", "--json", cwd=work, env=env).stdout) == {}


def _verify(work: Path, env: dict):
    return _run([sys.executable, "-m", "ptychostudy", "verify"], work, env, check=False)


def test_verify_agrees_and_detects_one_flipped_byte_in_any_bundle(repo):
    work, env = repo
    ok = _verify(work, env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "3 bundles, 0 problems" in ok.stdout
    bundles = sorted((work / "data/models").rglob("wts.h5.zip"))
    assert len(bundles) == 3
    for bundle in bundles:
        original = bundle.read_bytes()
        flipped = bytearray(original)
        flipped[len(flipped) // 2] ^= 0x01
        bundle.unlink()  # DVC links outputs from its cache: never write through the link
        bundle.write_bytes(bytes(flipped))
        try:
            result = _verify(work, env)
            assert result.returncode == 1
            rel = bundle.relative_to(work).as_posix()
            assert f"changed: {rel} has md5" in result.stdout
        finally:
            bundle.unlink()
            bundle.write_bytes(original)
    extra = work / "data/models/dose_100000/stray/wts.h5.zip"
    extra.parent.mkdir()
    extra.write_bytes(b"not a bundle")
    try:
        result = _verify(work, env)
        assert result.returncode == 1 and "extra: data/models/dose_100000/stray/wts.h5.zip" in result.stdout
    finally:
        shutil.rmtree(extra.parent)
    assert _verify(work, env).returncode == 0


def test_push_then_pull_on_a_fresh_clone_restores_every_artefact(repo, tmp_path):
    """Remote round trip: push to a folder remote, clone, pull; byte-identical, nothing runs, verify passes."""
    work, env = repo
    remote = tmp_path / "remote"
    dvc("remote", "add", "-d", "-f", "store", str(remote), cwd=work, env=env)
    _run(["git", "add", "-A"], work, env)
    _run(["git", "commit", "-qm", "remote", "--allow-empty"], work, env)
    dvc("push", cwd=work, env=env)
    clone = tmp_path / "clone"
    _run(["git", "clone", "-q", str(work), str(clone)], tmp_path, env)
    clone_env = {**env, "DVC_SITE_CACHE_DIR": str(tmp_path / "clone-site-cache")}
    assert not list((clone / "data/models").rglob("wts.h5.zip"))  # git brings DVC's .gitignore files only
    missing = _verify(clone, clone_env)
    assert missing.returncode == 1 and "missing: data/models/dose_100000/dense/wts.h5.zip" in missing.stdout
    dvc("pull", cwd=clone, env=clone_env)
    outs = _lock_outs(work)
    for path, md5 in outs.items():
        target = clone / path
        if target.is_file():
            assert hashlib.md5(target.read_bytes()).hexdigest() == md5, path
            assert target.read_bytes() == (work / path).read_bytes(), path
    assert all((clone / p).exists() for p in outs)
    assert json.loads(dvc("status", "--json", cwd=clone, env=clone_env).stdout) == {}
    result = dvc("repro", cwd=clone, env=clone_env)
    assert "Running stage" not in result.stdout
    # a model fetched by its artifact name (dvc.yaml's artifacts block) and registered version (a GTO tag, as
    # `gto register` writes it), from the repository and its remote
    _run(["git", "tag", "-a", "pinn-100000-dense@v0.1.0", "-m", "Registering artifact pinn-100000-dense version v0.1.0"],
         work, env)
    got = tmp_path / "fetched" / "wts.h5.zip"
    dvc("artifacts", "get", str(work), "pinn-100000-dense", "-o", str(got), cwd=tmp_path, env=clone_env)
    assert got.read_bytes() == (work / "data/models/dose_100000/dense/wts.h5.zip").read_bytes()
    ok = _verify(clone, clone_env)
    assert ok.returncode == 0 and "3 bundles, 0 problems" in ok.stdout, ok.stdout


def _training_processes(parent: int, marker: str) -> list[int]:
    """The training processes started by our own `dvc repro` (its descendants whose command line
    carries ``marker``): never another process on the machine, such as a real study running beside
    the tests."""
    import psutil

    try:
        children = psutil.Process(parent).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    found = []
    for child in children:
        try:
            cmdline = " ".join(child.cmdline())
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if "ptychostudy" in cmdline and marker in cmdline and "dvc" not in cmdline:
            found.append(child.pid)
    return found


def test_a_training_killed_halfway_leaves_nothing_that_looks_finished(repo):
    """SIGKILL a real training process mid-run: no output at its final path, and the next repro completes."""
    import signal
    import time

    work, env = repo
    stage, marker = "train@100000-dense", "--dose 100000 --view dense"
    # a process elsewhere on the machine whose command line looks like the job (a real study beside the
    # tests): the test must leave it alone
    decoy = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", "ptychostudy", "train", *marker.split()])
    lock_before = _lock_outs(work)
    long = tiny_params()
    long["train"]["epochs"]["dense"] = 400  # minutes of training: it is killed long before the end
    write_params(work / "params.yaml", long)
    outputs = [work / p for p in ("data/models/dose_100000/dense/wts.h5.zip", "reports/train/dose_100000-dense.json",
                                  "reports/train/dose_100000-dense.csv", "data/train/dose_100000/dense.npz")]
    try:
        proc = subprocess.Popen([sys.executable, "-m", "dvc", "repro", "-s", stage], cwd=work, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while not _training_processes(proc.pid, marker):
            assert time.monotonic() < deadline and proc.poll() is None, "training never started"
            time.sleep(0.2)
        time.sleep(4.0)  # well into training: imports done, steps running
        pids = _training_processes(proc.pid, marker)
        assert pids and proc.poll() is None
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        out = proc.communicate(timeout=120)[0].decode()
        assert proc.returncode != 0, out
        for path in outputs:
            assert not path.exists(), f"{path} exists after the kill"
        assert decoy.poll() is None, "the test killed a process it did not start"
    finally:
        write_params(work / "params.yaml", tiny_params())
        decoy.kill()
        decoy.wait()
    result = dvc("repro", cwd=work, env=env)
    assert f"'{stage}'" in result.stdout
    assert json.loads(dvc("status", "--json", cwd=work, env=env).stdout) == {}
    assert _lock_outs(work) == lock_before  # deterministic: the rerun rebuilt the very same bundle
    leftovers = [p for p in (work / "data/models/dose_100000/dense").iterdir() if p.name not in ("wts.h5.zip", ".gitignore")]
    assert all(".tmp-" in p.name for p in leftovers), leftovers
