"""The committed dvc.lock describes the committed code, base data and params.

A stale dvc.lock (code changed, pipeline not rerun) would make `dvc status` dirty on a
fresh clone and break the promise that `make study` reproduces the recorded hashes.
"""

from __future__ import annotations

import yaml

from ptychostudy.io import file_digest
from conftest import ROOT


def _lock():
    return yaml.safe_load((ROOT / "dvc.lock").read_text())


def test_every_git_tracked_dependency_matches_its_recorded_md5():
    checked = 0
    for name, stage in _lock()["stages"].items():
        for dep in stage.get("deps", []):
            path = ROOT / dep["path"]
            if dep["path"].startswith(("src/", "data/base/", "requirements")):
                assert path.is_file(), f"{name}: {dep['path']} is recorded in dvc.lock but missing"
                assert file_digest(path, "md5") == dep["md5"], (
                    f"stage {name}: {dep['path']} changed since dvc.lock was written; run `dvc repro` and commit dvc.lock"
                )
                checked += 1
    assert checked > 20


def test_recorded_params_match_params_yaml():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for name, stage in _lock()["stages"].items():
        for key, value in stage.get("params", {}).get("params.yaml", {}).items():
            node = params
            for part in key.split("."):
                node = node[part]
            assert node == value, f"stage {name}: params.yaml {key} changed since dvc.lock was written; run `dvc repro`"


def test_every_stage_of_the_design_is_locked():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    stages = set(_lock()["stages"])
    study = params["study"]
    expected = {"base", "summarize", "measured_ptychi@A", "measured_ptychi@B", "measured_pinn", "measured_compare"}
    expected |= {f"simulate@{o}-{d}" for o in study["objects"] for d in study["doses"]}
    for stage in ("views", "train", "tune", "reconstruct", "reconstruct_tuned", "gradient", "refine", "compare"):  # per cell
        expected |= {f"{stage}@{o}-{d}-{v}" for o in study["objects"] for d in study["doses"] for v in study["views"]}
    assert expected <= stages, sorted(expected - stages)
    rep = params["replicate"]
    replicated = {f"replicate@{o}-{d}-{v}" for o in rep["objects"] for d in rep["doses"] for v in rep["views"]}
    assert replicated <= stages, sorted(replicated - stages)


def test_dvc_lock_holds_no_stage_that_dvc_yaml_no_longer_defines():
    """`ptychostudy run` drops such entries (a renamed stage's old name); `verify` would read their bundles."""
    from dvc.repo import Repo

    defined = {s.addressing for s in Repo(str(ROOT)).index.stages}
    assert set(_lock()["stages"]) <= defined, sorted(set(_lock()["stages"]) - defined)[:5]


def test_the_replicate_stage_depends_on_what_its_arms_run():
    """The replicate stage retrains the network (every train key Phase E lists but the per-epoch scoring's) and
    reruns the iterative arms: a key that changes any arm reruns it."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    listed = set(stages["replicate"]["params"])
    train = {k for k in stages["train"]["params"] if not k.startswith(("train.eval_", "compare."))}
    assert train <= listed, sorted(train - listed)
    assert {"reconstruct", "gradient", "compare", "replicate.seeds", "infer.stitch_fraction", "infer.phase_sync"} <= listed
    assert "reports/tuning/${item.object}/dose_${item.dose}-${item.view}.json" in stages["replicate"]["deps"]


def test_training_stages_depend_on_every_train_key():
    """A train key missing from dvc.yaml would not rerun training when it changes."""
    import dataclasses

    from ptychostudy.params.train import TrainParams as TrainSection

    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["train"]
    listed = set(stage["params"])
    per_view = ("epochs", "canvas")  # one entry per view: a job depends on its own view's only
    expected = {f"train.{f.name}" for f in dataclasses.fields(TrainSection) if f.name not in per_view}
    expected |= {f"train.{name}.${{item.view}}" for name in per_view}
    # the per-epoch scores come from the one scoring path: its region and registration keys
    expected |= {"compare.scanned_threshold", "compare.max_shift_px"}
    assert expected == listed - {"base.patch_size"}, sorted(expected ^ (listed - {"base.patch_size"}))
    assert "base.patch_size" in listed  # not the whole base section: another object's definition never retrains
    assert not any(key == "infer" or key.startswith("infer.") for key in listed)  # the comparison's stitching never retrains


def test_reconstruct_and_compare_stages_depend_on_their_keys():
    import dataclasses

    from ptychostudy.params.reconstruct import ReconstructParams as ReconstructSection

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    listed = set(stages["reconstruct"]["params"])
    expected = {f"reconstruct.{f.name}" for f in dataclasses.fields(ReconstructSection) if f.name != "epochs"}
    assert expected | {"reconstruct.epochs.${item.view}"} == listed, sorted(expected ^ listed)
    # the tuned arm: its settings come from the selection file; only the shared pty-chi keys from params, and the
    # checkpoints at which it keeps its objects for the warmstart stage (its blank start)
    assert set(stages["reconstruct_tuned"]["params"]) == {"reconstruct.batch_size", "reconstruct.seed", "reconstruct.threads",
                                                          "warmstart.checkpoints"}
    # the gradient arm's run keeps its objects at the warmstart checkpoints too (the warmstart stage's blank start)
    assert set(stages["gradient"]["params"]) == {"gradient", "warmstart.checkpoints"}
    tune = set(stages["tune"]["params"])
    from ptychostudy.params.gradient import GradientParams as GradientSection
    from ptychostudy.params.refine import RefineParams as RefineSection

    solver = {f"gradient.{f.name}" for f in dataclasses.fields(GradientSection) if f.name != "threads"}
    assert solver | {"reconstruct.batch_size", "reconstruct.seed", "tune.ptychi_epochs.${item.view}", "tune.threads"} <= tune
    assert not any(key.startswith("train") or key.startswith("infer") for key in tune)
    assert "gradient" not in tune and "gradient.threads" not in tune  # the whole stage runs on tune.threads
    refine = set(stages["refine"]["params"])
    expected = {f"refine.{f.name}" for f in dataclasses.fields(RefineSection) if f.name != "steps"}
    # train.augment: refinement steps through Trainer, which turns the frames as training does
    assert expected | {"refine.steps.${item.view}", "infer.stitch_fraction", "infer.phase_sync", "infer.batch",
                       "compare", "train.augment"} == refine, sorted(refine ^ expected)
    # the network-started solvers: the tuned arms' shared keys, the gradient solver's but its threads, the scoring
    assert set(stages["warmstart"]["params"]) == {"warmstart", "reconstruct.seed", "reconstruct.batch_size", "compare"} | {
        f"gradient.{f.name}" for f in dataclasses.fields(GradientSection) if f.name != "threads"}
    # Phase G reads the infer stage's objects; study.subsets says whether a cell has the gridsize-1 network's arm
    assert set(stages["compare"]["params"]) == {"compare", "study.subsets"}
    assert set(stages["infer"]["params"]) == {"infer", "study.subsets"}


def test_the_study_plots_name_the_columns_the_summary_writes():
    from ptychostudy.config import load_config
    from ptychostudy.summary import PLOTS_DIR, PLOTTED, plot_columns

    from ptychostudy.summary import figure_path, object_cfg

    cfg = load_config(ROOT / "params.yaml")
    entries = yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]
    images = [p for p in entries if isinstance(p, str)]  # the PNG renderings (readable offline), one per object
    assert images == [f"reports/{figure_path(obj)}" for obj in cfg.study.objects]
    plots = {next(iter(p)): next(iter(p.values())) for p in entries if not isinstance(p, str)}
    assert sorted(plots) == sorted(f"reports/{PLOTS_DIR}/{obj}/{m}.csv" for obj in cfg.study.objects for m in PLOTTED)
    for obj in cfg.study.objects:  # an object's columns: the arms of the views it runs (the star: dense, no gridsize 1)
        columns = plot_columns(object_cfg(cfg, obj), obj)
        for m in PLOTTED:
            spec = plots[f"reports/{PLOTS_DIR}/{obj}/{m}.csv"]
            assert spec["x"] == "dose" and spec["y"] == columns
