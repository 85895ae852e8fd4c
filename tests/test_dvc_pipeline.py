"""End to end through the `dvc` command line: the pipeline itself (the tiny study built by the scale-out
driver from scratch, forced reruns, the driver's failures and kills, verify). What params changes reach
(an experiment among them), bad params and the remote round trip: `test_dvc_workflow.py`. Both take private copies of
one tiny study built once per session (`e2e.py`)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import write_params
from e2e import dvc, lock_outs, run, scaleout, started, study, tiny_params, verify


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return study(tmp_path_factory)


@pytest.fixture(scope="module")
def repo(built):
    work, env, _ = built
    return work, env


@pytest.fixture(scope="module")
def first(built):
    """What the build's driver runs printed and left: killed, recorded, stale, resumed."""
    return built[2]


def test_repro_runs_every_stage_and_leaves_status_clean(repo, first):
    work, env = repo
    ran = started(first["killed"]) | started(first["resumed"])
    locked = set(yaml.safe_load((work / "dvc.lock").read_text())["stages"])
    assert locked <= ran, locked - ran
    for stage in ("base", "simulate@run1084-100000", "views@run1084-100000-dense", "views@run1084-100000-sparse",
                  "train_figure@run1084-100000-dense", "tune_figure@run1084-100000-sparse", "infer@run1084-100000-dense",
                  "simulate@siemens_star-100000", "compare@siemens_star-100000-dense", "summarize", "measured_compare"):
        assert stage in locked, stage
    for path in (
        "data/prepared/run1084.npz",
        "data/prepared/siemens_star.npz",
        "data/simulated/run1084/dose_100000/patched_train.npz",
        "data/simulated/run1084/dose_100000/patched_test.npz",
        "data/views/run1084/dose_100000/dense/train.npz",
        "data/train/run1084/dose_100000/dense.npz",
        "reports/train/run1084/dose_100000-dense.png",
        "reports/tuning/run1084/dose_100000-dense.png",
        "data/infer/run1084/dose_100000/dense.npz",
        "data/views/run1084/dose_100000/baseline/test.npz",
        "reports/compare/siemens_star/dose_100000-dense/comparison.png",
        "reports/metrics.json",
        "reports/skip_summary.json",
        "reports/summary.md",
    ):
        assert (work / path).is_file(), path
    assert json.loads(dvc("status", "--json", cwd=work, env=env).stdout) == {}
    metrics = json.loads((work / "reports/metrics.json").read_text())
    shown = dvc("metrics", "show", cwd=work, env=env).stdout
    # one row per cell and one for the measured star, a column per arm: it fits a (wide) screen
    assert "reports/metrics/run1084/dose_100000-dense.json" in shown and "reports/measured/metrics.json" in shown
    assert "reports/metrics/siemens_star/dose_100000-dense.json" in shown
    assert max(map(len, shown.splitlines())) <= 210, shown  # eleven arm columns: a wide terminal
    header = shown.splitlines()[0].split()
    assert {"pinn", "ptychi_tuned", "ptychi_heldout", "gradient", "blank"} <= set(header), header
    row = json.loads((work / "reports/metrics/run1084/dose_100000-dense.json").read_text())
    assert row == {arm: values["phase_r"] for arm, values in metrics["run1084"]["dose_100000"]["dense"].items()
                   if "phase_r" in values}
    # Phases F and G: every cell of every view with its arms, and the study's tables and plots
    for obj in ("run1084", "siemens_star"):
        for view in ("baseline", "dense", "sparse"):
            for arm in ("ptychi", "ptychi_tuned", "ptychi_heldout", "gradient", "gradient_heldout", "pinn_refined",
                        "pinn_ptychi", "pinn_gradient"):
                assert (work / f"data/reconstruct/{obj}/dose_100000/{view}/{arm}.npz").is_file()
            assert (work / f"reports/reconstruct/warmstart/{obj}/dose_100000-{view}.json").is_file()
            assert (work / f"reports/tuning/{obj}/dose_100000-{view}.json").is_file()
            record = json.loads((work / f"reports/compare/{obj}/dose_100000-{view}/comparison.json").read_text())
            # the star runs the dense view only (study.subsets): its other cells are skipped, saying why
            assert record["skipped"] == (obj == "siemens_star" and view != "dense") or (
                obj == "run1084" and record["skipped"] and view == "sparse"), (obj, view)
            if record["skipped"] and obj == "siemens_star":
                assert "study.subsets.siemens_star" in record["reason"]
            if not record["skipped"]:
                assert record["arms"][-8:] == ["ptychi", "ptychi_tuned", "ptychi_heldout", "gradient",
                                               "gradient_heldout", "pinn_ptychi", "pinn_gradient", "blank"]
                assert "pinn_refined" in record["arms"]  # every view refines its own network
                # the gridsize-1 network's arm: only where the object runs the baseline view (not the star)
                assert ("pinn_gs1" in record["arms"]) == (obj == "run1084")
                assert (len(record["arms"]) == 11) == (view != "baseline" and obj == "run1084")
                assert (work / f"reports/compare/{obj}/dose_100000-{view}/comparison.png").is_file()
    # ptychodus product files: every arm with an object, the object and positions as the study has them
    from ptychostudy.stored import read_reconstruction
    from ptychostudy.npz import read_npz
    from ptychostudy.product import read_product

    for dose in (100000,):
        index = json.loads((work / f"data/products/run1084/dose_{dose}/dense/products.json").read_text())
        assert set(index["files"]) == {f"{a}.h5" for a in ("pinn", "pinn_refined", "pinn_gs1", "ptychi", "ptychi_tuned",
                                                           "ptychi_heldout", "gradient", "gradient_heldout", "pinn_ptychi",
                                                           "pinn_gradient")}
        test = read_npz(work / f"data/views/run1084/dose_{dose}/dense/test.npz", "view")
        for name in index["files"]:
            product = read_product(work / f"data/products/run1084/dose_{dose}/dense/{name}")
            obj, attrs = product["object"][0], product["object.attrs"]
            height, width = obj.shape
            x = (product["probe_position_x_m"] - attrs["center_x_m"]) / attrs["pixel_width_m"] + (width - 1) / 2
            y = (product["probe_position_y_m"] - attrs["center_y_m"]) / attrs["pixel_height_m"] + (height - 1) / 2
            assert abs(x - test["xcoords"]).max() < 1e-9 and abs(y - test["ycoords"]).max() < 1e-9, name
            assert len(product["loss_values"]) == len(product["loss_epochs"]) > 0
            if name.startswith("ptychi"):
                assert (obj == read_reconstruction(work / f"data/reconstruct/run1084/dose_{dose}/dense/{name[:-3]}.npz")[0]).all()
    # the headline numbers only, nested object -> dose -> view -> arm: per arm phase r, phase FRC½, amplitude r; per
    # job the final loss and the bundle's size (every metric of every cell is in study_metrics.csv)
    assert set(metrics) == {"run1084", "siemens_star"} and set(metrics["siemens_star"]["dose_100000"]) == {"dense"}
    for dose_metrics in (d for object_metrics in metrics.values() for d in object_metrics.values()):
        for view, cell in dose_metrics.items():
            assert set(cell) <= {"pinn", "pinn_refined", "pinn_gs1", "ptychi", "ptychi_tuned", "ptychi_heldout", "gradient",
                                 "gradient_heldout", "pinn_ptychi", "pinn_gradient", "blank", "train"}, cell
            assert {"blank", "ptychi_tuned", "ptychi_heldout", "gradient", "gradient_heldout", "pinn_refined", "pinn_ptychi",
                    "pinn_gradient"} <= set(cell), cell
            assert set(cell["train"]) == {"final_loss", "bundle_bytes"}
            for arm in set(cell) - {"train"}:  # an FRC that never crossed has no number (absent, never 1 px)
                assert set(cell[arm]) - {"phase_r_seeds", "phase_r_seed_sd", "phase_frc50_px"} == {
                    "phase_r", "phase_detail_r", "amplitude_r"}
    assert "ptychi" in metrics["run1084"]["dose_100000"]["baseline"]
    star = (work / "reports/study_metrics.csv").read_text().splitlines()
    assert star[0].startswith("object,dose,view,") and any(r.startswith("siemens_star,100000,dense,") for r in star)
    # the spread of the replicated cell (tiny profile: dense at 1e5, one other seed, one noise redraw): every arm
    replicated = json.loads((work / "reports/replicate/run1084/dose_100000-dense.json").read_text())
    assert set(replicated["arms"]) == {"pinn", "pinn_refined", "ptychi", "ptychi_tuned", "gradient"}
    for arm in replicated["arms"]:
        assert metrics["run1084"]["dose_100000"]["dense"][arm]["phase_r_seeds"] == 3
    assert not (work / "reports/replicate/run1084/dose_100000-sparse.json").exists()  # replicate.views: dense only
    assert not (work / "reports/replicate/siemens_star").exists()  # replicate.objects: run1084 only
    summary = (work / "reports/summary.md").read_text()
    assert "## Phase G" in summary and "## Conclusion" in summary and "figures/run1084/metrics_vs_dose.png" in summary
    assert "# siemens_star" in summary and "figures/siemens_star/metrics_vs_dose.png" in summary
    assert "| floor |" in summary and "skill" in summary  # every headline measure beside its floor
    assert "## Selection (tune stage)" in summary and "tuned iterative" in summary
    assert "## Seed-to-seed spread (replicate stage)" in summary and "measured (replicate stage, 3 runs" in summary
    plotted = yaml.safe_load((work / "dvc.yaml").read_text())["plots"]
    for entry in plotted:
        if isinstance(entry, str):  # an image: the PNG rendering of the same numbers
            assert entry.endswith(".png") and (work / entry).is_file()
            continue
        (path, spec), = entry.items()
        header = (work / path).read_text().splitlines()[0].split(",")
        assert header == ["dose"] + spec["y"], path
    html = dvc("plots", "show", cwd=work, env=env)  # into .dvc/tmp/plots (.dvc/config): no folder in the work tree
    page = work / ".dvc/tmp/plots/index.html"
    assert html.returncode == 0 and page.is_file() and not (work / "dvc_plots").exists()
    assert '<img src="static/' in page.read_text()  # readable offline: the PNG beside the Vega charts
    lock = (work / "dvc.lock").read_text()
    assert "data/simulated/run1084/dose_100000/patched_train.npz" in lock and "md5:" in lock
    # the measured Siemens star: pty-chi per half, the network, the agreement report, all in dvc.lock
    for path in ("data/measured/ptychi_A.npz", "data/measured/ptychi_B.npz", "data/measured/pinn.h5.zip",
                 "data/measured/pinn.npz", "reports/measured/measured.json", "reports/measured/measured.png"):
        assert (work / path).is_file() and path in lock, path
    measured = json.loads((work / "reports/measured/measured.json").read_text())
    assert measured["pairs"]["ptychi_A_vs_ptychi_B"]["phase_r"] > measured["pairs"]["blank_vs_ptychi_B"]["phase_r"]
    assert json.loads((work / "reports/measured/metrics.json").read_text()) == {  # its `dvc metrics show` row
        "ptychi": measured["pairs"]["ptychi_A_vs_ptychi_B"]["phase_r"], "pinn": measured["pairs"]["pinn_B_vs_ptychi_B"]["phase_r"],
        "blank": measured["pairs"]["blank_vs_ptychi_B"]["phase_r"]}


def test_every_bundle_is_locked_and_listed_with_its_sha256(repo):
    work, env = repo
    outs = lock_outs(work)
    bundles = {p: md5 for p, md5 in outs.items() if p.endswith("wts.h5.zip")}
    expected = {f"data/models/{o}/dose_100000/{v}/wts.h5.zip" for o in ("run1084", "siemens_star")
                for v in ("baseline", "dense", "sparse")}  # the star's skipped cells: a bundle that says why
    assert set(bundles) == expected
    for path, md5 in bundles.items():
        assert hashlib.md5((work / path).read_bytes()).hexdigest() == md5
    manifest = json.loads((work / "reports/training_manifest.json").read_text())
    listed = {f"{manifest['artifact_dir']}/{job['bundle']}": job["sha256"] for job in manifest["jobs"]}
    skipped = {(s["object"], s["dose"], s["view"]) for s in manifest["skipped"]}
    assert len(listed) + len(skipped) == 6 and ("siemens_star", 100000, "sparse") in skipped
    for path, sha in listed.items():
        assert len(sha) == 64 and sha == hashlib.sha256((work / path).read_bytes()).hexdigest()
    assert "train" in json.loads((work / "reports/metrics.json").read_text())["run1084"]["dose_100000"]["dense"]


def test_forced_repro_leaves_dvc_lock_and_every_bundle_byte_identical(repo):
    """One stage of every kind forced to rerun serially (`dvc repro -f -s`, no run cache) over the scale-out
    driver's results: dvc.lock and the bundles stay byte-identical, so the driver records what the serial
    `dvc repro` does and every kind's outputs are reproducible. (A forced rerun of all 44 stages proves no
    more per stage kind and doubles the module's time.)"""
    work, env = repo
    before = (work / "dvc.lock").read_bytes()
    bundles = {p: p.read_bytes() for p in (work / "data/models").rglob("wts.h5.zip")}
    bundles[work / "data/measured/pinn.h5.zip"] = (work / "data/measured/pinn.h5.zip").read_bytes()
    stages = ["base", "simulate@run1084-100000", "views@run1084-100000-dense", "train@run1084-100000-dense", "train_figure@run1084-100000-dense",
              "tune@run1084-100000-dense", "tune_figure@run1084-100000-dense", "reconstruct@run1084-100000-dense",
              "reconstruct_tuned@run1084-100000-dense", "gradient@run1084-100000-dense", "refine@run1084-100000-dense",
              "replicate@run1084-100000-dense", "infer@run1084-100000-dense", "compare@run1084-100000-dense", "product@run1084-100000-dense",
              "summarize", "measured_ptychi@A", "measured_pinn", "measured_compare"]
    result = dvc("repro", "-f", "-s", "--no-run-cache", *stages, cwd=work, env=env)
    ran = {line.split("'")[1] for line in result.stdout.splitlines() if line.startswith("Running stage")}
    assert ran == set(stages), ran
    assert (work / "dvc.lock").read_bytes() == before
    assert all(path.read_bytes() == data for path, data in bundles.items())
    assert json.loads(dvc("status", "--json", cwd=work, env=env).stdout) == {}


def test_scaleout_from_scratch_killed_and_resumed_records_only_finished_stages(repo, first):
    """The fixture's run (the driver from scratch, killed midway): it had recorded only stages whose
    outputs were complete; the next run did only the rest and recorded them without DVC's per-stage
    chatter. (That its dvc.lock is the serial one: the forced serial rerun above.)"""
    work, env = repo
    recorded, stale = set(first["recorded"]), set(first["stale"])
    assert "summarize" not in recorded, first["killed"]  # killed midway
    assert stale and not (stale & recorded), (stale & recorded)  # nothing recorded with partial outputs
    resumed = first["resumed"]
    assert not (started(resumed) & recorded), resumed  # the next run does only what is missing
    assert started(resumed) and "0 failed, 0 skipped" in resumed, resumed
    assert "Updating lock file" not in resumed  # DVC's line per recorded stage is left out
    assert json.loads(dvc("status", "--json", cwd=work, env=env).stdout) == {}


def test_scaleout_a_failing_cell_lets_the_others_finish_and_is_reported_with_its_log(repo, tmp_path):
    work, env = repo
    serial = (work / "dvc.lock").read_bytes()
    failing, other = ("train@run1084-100000-sparse", "--object run1084 --dose 100000 --view sparse"), "train@run1084-100000-dense"
    for cell in ("100000/sparse", "100000/dense"):
        (work / f"data/models/run1084/dose_{cell}/wts.h5.zip").unlink()  # both stale now
    shim = tmp_path / "shim"
    shim.mkdir()
    # a `python` that fails the one training job (stage commands run `python -m ptychostudy.<module>`)
    (shim / "python").write_text(f'#!/bin/sh\ncase "$*" in *"ptychostudy.train {failing[1]} "*) '
                                 f'echo "injected failure" >&2; exit 3;; esac\nexec {sys.executable} "$@"\n')
    (shim / "python").chmod(0o755)
    failing_env = {**env, "PATH": f"{shim}{os.pathsep}{env['PATH']}"}
    result = run(scaleout("--jobs", "2"), work, failing_env, check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"FAILED {failing[0]}" in result.stdout and "injected failure" in result.stdout
    log = next(line.split("(log: ")[1].rstrip(")") for line in result.stdout.splitlines()
               if line.strip().startswith(f"failed: {failing[0]}"))
    assert "injected failure" in Path(log).read_text()
    assert f"done   {other}" in result.stdout  # the other cell finished ...
    assert "skipped: summarize" in result.stdout  # ... and what needs the failed one waited
    stale = set(json.loads(dvc("status", "--json", cwd=work, env=env).stdout))
    assert failing[0] in stale and other not in stale, stale  # ... and was recorded
    again = run(scaleout("--jobs", "2"), work, env)
    assert started(again.stdout) == {failing[0]}, again.stdout
    assert (work / "dvc.lock").read_bytes() == serial
    assert json.loads(dvc("status", "--json", cwd=work, env=env).stdout) == {}


def test_verify_agrees_and_detects_one_flipped_byte_in_any_bundle(repo):
    work, env = repo
    ok = verify(work, env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "6 bundles, 0 problems" in ok.stdout
    bundles = sorted((work / "data/models").rglob("wts.h5.zip"))
    assert len(bundles) == 6  # the star's skipped cells included: a bundle that says why
    for bundle in bundles:
        original = bundle.read_bytes()
        flipped = bytearray(original)
        flipped[len(flipped) // 2] ^= 0x01
        bundle.unlink()  # DVC links outputs from its cache: never write through the link
        bundle.write_bytes(bytes(flipped))
        try:
            result = verify(work, env)
            assert result.returncode == 1
            rel = bundle.relative_to(work).as_posix()
            assert f"changed: {rel} has md5" in result.stdout
        finally:
            bundle.unlink()
            bundle.write_bytes(original)
    extra = work / "data/models/run1084/dose_100000/stray/wts.h5.zip"
    extra.parent.mkdir()
    extra.write_bytes(b"not a bundle")
    try:
        result = verify(work, env)
        assert result.returncode == 1 and "extra: data/models/run1084/dose_100000/stray/wts.h5.zip" in result.stdout
    finally:
        shutil.rmtree(extra.parent)
    assert verify(work, env).returncode == 0


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
    stage, marker = "train@run1084-100000-dense", "--object run1084 --dose 100000 --view dense"
    # a process elsewhere on the machine whose command line looks like the job (a real study beside the
    # tests): the test must leave it alone
    decoy = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", "ptychostudy", "train", *marker.split()])
    lock_before = lock_outs(work)
    long = tiny_params()
    long["train"]["epochs"]["dense"] = 400  # minutes of training: it is killed long before the end
    write_params(work / "params.yaml", long)
    outputs = [work / p for p in ("data/models/run1084/dose_100000/dense/wts.h5.zip", "reports/train/run1084/dose_100000-dense.json",
                                  "reports/train/run1084/dose_100000-dense.csv", "data/train/run1084/dose_100000/dense.npz")]
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
    assert lock_outs(work) == lock_before  # deterministic: the rerun rebuilt the very same bundle
    leftovers = [p for p in (work / "data/models/run1084/dose_100000/dense").iterdir() if p.name not in ("wts.h5.zip", ".gitignore")]
    assert all(".tmp-" in p.name for p in leftovers), leftovers
