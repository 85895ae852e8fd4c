"""The front door: README stays short and every link in it and in docs/ leads somewhere; the pipeline's
picture is current."""

from __future__ import annotations

import re
import subprocess
import sys

from conftest import ROOT

LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_the_readme_is_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200


def test_every_relative_link_in_readme_and_docs_names_a_file():
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in LINK.findall(page.read_text()):
            if target.startswith(("http://", "https://")):
                continue
            assert (page.parent / target).exists(), f"{page.relative_to(ROOT)} links to {target}, which does not exist"


def test_the_pipeline_picture_is_current():
    result = subprocess.run([sys.executable, "-m", "ptychostudy", "dag", "--check"], cwd=ROOT, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    page = (ROOT / "docs/pipeline.md").read_text()
    for kind in ("simulate", "tune", "reconstruct_tuned", "compare", "summarize"):
        assert f"  {kind}[{kind}]" in page
    assert "  tune --> reconstruct_tuned" in page and "  compare --> summarize" in page


def test_the_rerun_table_is_current_and_says_what_the_issue_found():
    """docs/reruns.md is `ptychostudy reruns` for today's dvc.yaml and params.yaml (its stale sets are checked against
    real `dvc status` in test_dvc_workflow.py); the facts a hand-written page had wrong are in it as computed."""
    result = subprocess.run([sys.executable, "-m", "ptychostudy", "reruns", "--check"], cwd=ROOT, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {line.split(" | ")[0]: line for line in (ROOT / "docs/reruns.md").read_text().splitlines()
            if line.startswith("| `")}
    learning_rate = next(line for label, line in rows.items() if "`train.learning_rate`" in label)
    assert "train ×18" in learning_rate and "replicate ×2" in learning_rate and "measured_pinn" in learning_rate
    stitch = next(line for label, line in rows.items() if "`infer.stitch_fraction`" in label)
    assert "refine ×18" in stitch.split(" | ")[1]  # "restitching" refines again: the refinement scores with infer.*


def test_no_page_claims_what_a_change_reruns_by_hand():
    """Rerun claims live in docs/reruns.md (computed) only: an experiment's comment that says what it runs points
    there (a hand-written list of stages was wrong five times, issue 39)."""
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        if page.name in ("reruns.md", "history.md"):
            continue
        text = page.read_text()
        for claim in re.findall(r"dvc exp run -S [^\n]*#[^\n]*", text):
            comment = claim.split("#", 1)[1]
            says = re.search(r"@|\bno training\b|\b(runs|reruns|reaches|touches)\b(?!\.md)", comment)
            assert not says or "reruns.md" in comment, (page.name, claim)
        assert not re.search(r"(section|key) reruns (the|only)", text), page.name


def test_the_cpu_torch_install_takes_the_locked_version_from_the_given_index():
    """`make install TORCH_INDEX_URL=...` installs the lock's torch from that index before the lock (a dry run of the
    recipe), and the CPU index's `2.13.0+cpu` satisfies the lock's pin, so the lock does not replace it."""
    from packaging.specifiers import SpecifierSet

    pin = next(line for line in (ROOT / "requirements.lock.txt").read_text().splitlines() if line.startswith("torch=="))
    url = "https://download.pytorch.org/whl/cpu"
    recipe = subprocess.run(["make", "-n", "-B", ".venv/.installed", f"TORCH_INDEX_URL={url}"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.splitlines()
    first = next(i for i, line in enumerate(recipe) if "pip install" in line)
    assert f"--index-url {url}" in recipe[first] and f'"{pin}"' in recipe[first]
    assert "-r requirements.lock.txt" in recipe[first + 1]
    plain = subprocess.run(["make", "-n", "-B", ".venv/.installed"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout
    assert "--index-url" not in plain
    version = pin.split("==", 1)[1]
    assert SpecifierSet(f"=={version}").contains(f"{version}+cpu")
    assert not SpecifierSet(f"=={version}").contains("2.12.0+cpu")
