"""dvc.yaml spells the paths that layout.py defines: one home for the layout, checked."""

from __future__ import annotations

import shlex

import pytest
import yaml

from conftest import ROOT
from ptychostudy import StudyError, layout

OBJ, DOSE, VIEW = "run1084", 1000, "dense"


def _stage(name: str) -> dict:
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][name]
    text = yaml.safe_dump(stage.get("do", stage))
    text = text.replace("${item.object}", OBJ).replace("${item.dose}", str(DOSE)).replace("${item.view}", VIEW).replace("${item}", str(DOSE))
    return yaml.safe_load(text)


def _args(stage: dict) -> dict[str, str]:
    words = shlex.split(stage["cmd"])
    return {w: words[i + 1] for i, w in enumerate(words[:-1]) if w.startswith("--") and not words[i + 1].startswith("--")}


def _outs(stage: dict) -> set[str]:
    return {next(iter(o)) if isinstance(o, dict) else o for o in stage["outs"]}


def test_simulate_writes_where_layout_says():
    stage = _stage("simulate")
    sim_dir = layout.simulated_dir(OBJ, DOSE)
    assert _args(stage)["--out-dir"] == sim_dir.as_posix()
    assert {layout.simulated_file(sim_dir, s).as_posix() for s in layout.SPLITS} <= _outs(stage)
    assert _args(stage)["--report"] == layout.report_path("simulate", OBJ, DOSE).as_posix()


def test_the_base_stage_writes_one_prepared_file_per_defined_object():
    """Its outputs are files, not the folder (data/prepared/.gitignore is git's), one per object params.yaml defines."""
    from ptychostudy.config import load_config

    cfg = load_config(ROOT / "params.yaml")
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["base"]
    defined = [*cfg.base.object_files, *cfg.base.object_patterns]
    assert _outs(stage) == {layout.prepared_path(o).as_posix() for o in defined}
    assert set(cfg.study.objects) <= set(defined)
    args = shlex.split(stage["cmd"])
    files = dict(args[i + 1].split("=", 1) for i, w in enumerate(args) if w == "--object-file")
    assert set(files) == set(cfg.base.object_files) and all(f in stage["deps"] for f in files.values())


def test_views_train_reconstruct_and_compare_use_layout_paths():
    view_dir = layout.view_dir(OBJ, DOSE, VIEW).as_posix()
    views = _stage("views")
    assert _args(views)["--out-dir"] == view_dir and view_dir in _outs(views)
    assert _args(views)["--report"] == layout.report_path("views", OBJ, DOSE, VIEW).as_posix()
    train = _stage("train")
    assert _args(train)["--view-dir"] == view_dir
    assert _args(train)["--bundle"] == layout.bundle_path(layout.MODELS, OBJ, DOSE, VIEW).as_posix()
    assert _args(train)["--report"] == layout.report_path("train", OBJ, DOSE, VIEW).as_posix()
    assert _args(train)["--shown"] == layout.train_shown_path(OBJ, DOSE, VIEW).as_posix() in _outs(train)
    drawn = _stage("train_figure")
    assert _args(drawn)["--data"] == layout.train_shown_path(OBJ, DOSE, VIEW).as_posix() in drawn["deps"]
    assert _args(drawn)["--figure"] == layout.report_path("train", OBJ, DOSE, VIEW, ".png").as_posix() in _outs(drawn)
    drawn = _stage("tune_figure")
    assert _args(drawn)["--report"] == layout.tuning_path(OBJ, DOSE, VIEW).as_posix() in drawn["deps"]
    assert _args(drawn)["--figure"] == layout.tuning_path(OBJ, DOSE, VIEW).with_suffix(".png").as_posix() in _outs(drawn)
    for stage_name, arm in (("reconstruct", "ptychi"), ("reconstruct_tuned", "ptychi_tuned"), ("gradient", "gradient")):
        stage = _stage(stage_name)
        assert _args(stage)["--out"] == layout.reconstruction_path(OBJ, DOSE, VIEW, arm).as_posix()
        assert _args(stage)["--report"] == layout.report_path(f"reconstruct/{arm}", OBJ, DOSE, VIEW).as_posix()
        assert _args(stage).get("--arm", "gradient") == arm
        if arm != "ptychi":
            assert _args(stage)["--tuning"] == layout.tuning_path(OBJ, DOSE, VIEW).as_posix()
            assert layout.tuning_path(OBJ, DOSE, VIEW).as_posix() in stage["deps"]
    tune = _stage("tune")
    assert _args(tune)["--report"] == layout.tuning_path(OBJ, DOSE, VIEW).as_posix()
    assert layout.view_file(view_dir, "train").as_posix() in tune["deps"]
    compare = _stage("compare")
    from ptychostudy.config import load_config

    from ptychostudy.arms import baseline_view

    baseline = baseline_view(load_config(ROOT / "params.yaml"), OBJ)
    infer = _stage("infer")
    for view in (VIEW, baseline):  # exactly the two bundles the infer stage reads, not the whole dose folder
        assert layout.bundle_path(layout.MODELS, OBJ, DOSE, view).as_posix() in infer["deps"]
    assert _args(infer)["--models"] == layout.MODELS.as_posix()
    assert _args(infer)["--out"] == layout.inferred_path(OBJ, DOSE, VIEW).as_posix() and _outs(infer) == {
        layout.inferred_path(OBJ, DOSE, VIEW).as_posix()}
    assert _args(compare)["--inferred"] == layout.inferred_path(OBJ, DOSE, VIEW).as_posix() in compare["deps"]
    assert not any("wts.h5.zip" in d for d in compare["deps"])  # Phase G reads objects, never a network
    assert _args(compare)["--reconstructions"] == layout.reconstruction_dir(OBJ, DOSE, VIEW).as_posix()
    for arm in layout.STORED_ARMS:  # each Phase F file (the refined and network-started arms too), not the folder
        assert layout.reconstruction_path(OBJ, DOSE, VIEW, arm).as_posix() in compare["deps"]
    warm = _stage("warmstart")  # the network-started solvers: the infer stage's object and the tuning selection
    assert _args(warm)["--inferred"] == layout.inferred_path(OBJ, DOSE, VIEW).as_posix() in warm["deps"]
    assert _args(warm)["--tuning"] == layout.tuning_path(OBJ, DOSE, VIEW).as_posix() in warm["deps"]
    for flag, arm in (("--ptychi-out", "pinn_ptychi"), ("--gradient-out", "pinn_gradient")):
        assert _args(warm)[flag] == layout.reconstruction_path(OBJ, DOSE, VIEW, arm).as_posix() in _outs(warm)
    assert _args(warm)["--report"] == layout.report_path("reconstruct/warmstart", OBJ, DOSE, VIEW).as_posix() in _outs(warm)
    assert layout.report_path("reconstruct/warmstart", OBJ, DOSE, VIEW).parent.parent == layout.WARMSTART
    assert not any("wts.h5.zip" in d for d in warm["deps"])  # it starts from the network's object, never the network
    assert _args(compare)["--out-dir"] == layout.compare_dir(layout.REPORTS / "compare", OBJ, DOSE, VIEW).as_posix()
    product = _stage("product")  # the same inputs as Phase G, plus the networks' training histories
    assert {d for d in compare["deps"] if d.startswith("data/")} <= set(product["deps"])
    for view in (VIEW, baseline):
        assert layout.report_path("train", OBJ, DOSE, view, ".csv").as_posix() in product["deps"]
    assert _args(product)["--train-reports"] == (layout.REPORTS / "train").as_posix()
    assert _args(product)["--out-dir"] == layout.product_dir(OBJ, DOSE, VIEW).as_posix() and _outs(product) == {
        layout.product_dir(OBJ, DOSE, VIEW).as_posix()}


def test_a_missing_or_broken_view_summary_is_one_clear_error(tmp_path):
    with pytest.raises(StudyError, match="no view.json; run the views stage of dose 1000, view dense first"):
        layout.read_view_summary(tmp_path, 1000, "dense")
    (tmp_path / layout.VIEW_SUMMARY).write_text("{not json")
    with pytest.raises(StudyError, match="not a readable view summary"):
        layout.read_view_summary(tmp_path, 1000, "dense")
    (tmp_path / layout.VIEW_SUMMARY).write_text('{"skipped": "no"}')
    with pytest.raises(StudyError, match="boolean 'skipped'"):
        layout.read_view_summary(tmp_path, 1000, "dense")
    (tmp_path / layout.VIEW_SUMMARY).write_text('{"skipped": true}')
    assert layout.read_view_summary(tmp_path, 1000, "dense") == {"skipped": True, "reason": ""}


def test_every_bundle_is_declared_as_a_model_artifact():
    """dvc.yaml's artifacts block: one model per bundle of a cell in the study (study.objects × doses × views less what
    study.subsets leaves out), at layout's path."""
    from ptychostudy.config import load_config

    cfg = load_config(ROOT / "params.yaml")
    artifacts = yaml.safe_load((ROOT / "dvc.yaml").read_text())["artifacts"]
    expected = {f"pinn-{o}-{d}-{v}": layout.bundle_path(layout.MODELS, o, d, v).as_posix()
                for o in cfg.study.objects for d in cfg.study.doses for v in cfg.study.views if cfg.study.runs(o, d, v)}
    assert {name: a["path"] for name, a in artifacts.items()} == expected
    assert any(name.startswith("pinn-siemens_star-") for name in expected) and len(expected) < len(cfg.study.objects) * 9
    for name, a in artifacts.items():
        obj, dose, view = name.split("-")[1:]
        assert a["type"] == "model" and a["desc"]
        assert {f"object-{obj}", f"dose-{dose}", f"view-{view}", f"gridsize-{cfg.view(view).gridsize}"} <= set(a["labels"])
