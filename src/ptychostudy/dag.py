"""``ptychostudy dag``: the pipeline's picture, one box per stage kind (``train``, not ``train@1000-dense``).

``dvc dag`` draws all of the study's stages (4,591 characters wide); this draws what a reader needs: which kind
of stage feeds which, from ``dvc dag --dot``, as a Mermaid flowchart in ``docs/pipeline.md`` (GitHub renders
it). ``--check`` exits 1 when the file no longer matches the pipeline (a test runs it).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

from ptychostudy import CheckFailed, StudyError, stage

PAGE = Path("docs/pipeline.md")
HEADER = """# The pipeline

One box per kind of stage (each runs once per object × dose, cell or half of the measured scan, as `dvc.yaml`
says); an arrow: a stage reads what the other writes. Drawn from `dvc dag --dot` by `ptychostudy dag` (a test
checks that this page is current). `dvc dag` draws every stage.

"""


def edges(dot: str) -> tuple[list[str], list[tuple[str, str]]]:
    """(stage kinds in order of appearance, kind-to-kind edges without self-loops) of a ``dvc dag --dot`` text."""
    kind = lambda name: name.split("@", 1)[0]  # noqa: E731
    nodes = list(dict.fromkeys(kind(n) for n in re.findall(r'^"([^"]+)";$', dot, flags=re.M)))
    pairs = dict.fromkeys((kind(a), kind(b)) for a, b in re.findall(r'^"([^"]+)" -> "([^"]+)";$', dot, flags=re.M))
    return nodes, [(a, b) for a, b in pairs if a != b]


def mermaid(dot: str) -> str:
    nodes, pairs = edges(dot)
    lines = ["```mermaid", "flowchart LR"]
    lines += [f"  {name}[{name}]" for name in nodes]
    lines += [f"  {a} --> {b}" for a, b in pairs]
    return "\n".join(lines + ["```", ""])


def page() -> str:
    try:
        dot = subprocess.run([sys.executable, "-m", "dvc", "dag", "--dot"], capture_output=True, text=True, check=True,
                             env={**os.environ, "DVC_NO_ANALYTICS": "1"}).stdout
    except subprocess.CalledProcessError as exc:
        raise StudyError(f"dvc dag failed: {exc.stderr.strip()}") from None
    return HEADER + mermaid(dot)


def publish(args, text: str, stale: str, written: str) -> None:
    """Write a generated page (``args.page``), or with ``args.check`` only compare it: exit 1 with ``stale`` when it
    differs. The generated pages' one command line (``ptychostudy dag``, ``ptychostudy reruns``)."""
    if args.check:
        current = args.page.read_text(encoding="utf-8") if args.page.is_file() else ""
        if current != text:
            raise CheckFailed(f"{args.page} {stale}")
        print(f"{args.page}: current")
        return
    args.page.write_text(text, encoding="utf-8")
    print(f"{written} -> {args.page}")


def page_parser(prog: str, doc: str, default: Path) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=doc.split("\n\n")[0])
    p.add_argument("--page", type=Path, default=default, help=f"the Markdown page to write (default {default})")
    p.add_argument("--check", action="store_true", help="only compare the page with the pipeline (exit 1 if stale)")
    return p


def cli(args) -> None:
    publish(args, page(), "is not the current pipeline: run `ptychostudy dag`", "the pipeline's picture")


def build_parser(prog: str = "python -m ptychostudy.dag") -> argparse.ArgumentParser:
    return page_parser(prog, __doc__, PAGE)


def main(argv: list[str] | None = None, prog: str = "python -m ptychostudy.dag") -> int:
    return stage.main(cli, build_parser(prog), argv, timed=False)


if __name__ == "__main__":
    sys.exit(main())
