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
