"""The quick run's profile and workspace (ptychostudy demo / make demo): the tests' own design comes from the same file."""

from __future__ import annotations

import pytest
import yaml

from conftest import ROOT
from ptychostudy import StudyError
from ptychostudy.demo import main, merged, profile_params


def test_the_tiny_profile_is_params_yaml_with_the_profile_keys_and_nothing_else_changed():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    profile = yaml.safe_load((ROOT / "profiles" / "tiny.yaml").read_text())
    tiny = profile_params(ROOT / "profiles" / "tiny.yaml", ROOT / "params.yaml")
    assert tiny["simulate"]["positions_per_split"] == profile["simulate"]["positions_per_split"] == 64
    assert tiny["tune"]["ptychi_search"]["trials"] == 3
    assert tiny["tune"]["ptychi_search"]["seed"] == params["tune"]["ptychi_search"]["seed"]  # merged, not replaced
    changed = {(section, key) for section in params for key in params[section]
               if tiny[section][key] != params[section][key]}
    listed = {(section, key) for section in profile for key in profile[section]}
    assert changed <= listed and changed  # every difference is a key the profile lists


def test_a_profile_key_that_params_yaml_lacks_is_refused_by_name():
    with pytest.raises(StudyError, match=r"train\.epoch\b.*misspelt"):
        merged({"train": {"epochs": {"dense": 8}}}, {"train": {"epoch": 3}})
    with pytest.raises(StudyError, match=r"train\.epochs\.denes"):
        merged({"train": {"epochs": {"dense": 8}}}, {"train": {"epochs": {"denes": 3}}})


def test_demo_refuses_a_bad_profile_before_making_a_workspace(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  steps_per_epoch: -3\n")
    work = tmp_path / "ws"
    assert main(["--profile", str(bad), "--dir", str(work)], prog="ptychostudy demo") == 2
    assert "steps_per_epoch" in capsys.readouterr().err
    assert not work.exists()
    (tmp_path / "typo.yaml").write_text("simulat:\n  seed: 1\n")
    assert main(["--profile", str(tmp_path / "typo.yaml"), "--dir", str(work)], prog="ptychostudy demo") == 2
    assert "simulat" in capsys.readouterr().err and not work.exists()


def test_demo_refuses_a_workspace_folder_that_holds_files(tmp_path, capsys):
    work = tmp_path / "ws"
    work.mkdir()
    (work / "mine.txt").write_text("keep me")
    assert main(["--dir", str(work)], prog="ptychostudy demo") == 2
    assert "not empty" in capsys.readouterr().err
    assert sorted(p.name for p in work.iterdir()) == ["mine.txt"]
