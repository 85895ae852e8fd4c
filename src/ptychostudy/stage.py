"""What every stage's entry point shares (``python -m ptychostudy.<module> ...``, as dvc.yaml runs them).

A stage module builds its own parser with these helpers and ends in ``stage.main``: bad input
(``StudyError``) is one sentence on stderr and exit code 2, a failed check (``CheckFailed``) exit
code 1. The ``ptychostudy`` command for people (module ``cli``) hands its words to the same mains.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

from ptychostudy import CheckFailed, StudyError


def parser(prog: str, help: str = "", description: str | None = None) -> argparse.ArgumentParser:
    """A stage's parser; ``--no-progress`` hides its progress bars."""
    p = argparse.ArgumentParser(prog=prog, description=description or help)
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return p


def add_params(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", type=Path, default=Path("params.yaml"), help="the study design (default: params.yaml)")


def add_object(p: argparse.ArgumentParser) -> None:
    p.add_argument("--object", required=True, dest="obj", help="an object listed in study.objects")


def add_dose_stage(p: argparse.ArgumentParser, out_dir_help: str, report_help: str) -> None:
    """Arguments shared by the per-dose stages: params, object, dose, output folder, report, figure."""
    add_params(p)
    add_object(p)
    p.add_argument("--dose", required=True, help="photons per pattern; must be one of study.doses")
    p.add_argument("--out-dir", type=Path, required=True, help=out_dir_help)
    p.add_argument("--report", type=Path, required=True, help=report_help)
    p.add_argument("--figure", type=Path, required=True, help="PNG to write")


def add_cell(p: argparse.ArgumentParser, view_dir_help: str) -> None:
    """Arguments shared by the per-cell stages: params, object, dose, view, view folder."""
    add_params(p)
    add_object(p)
    p.add_argument("--dose", required=True, help="photons per pattern; must be one of study.doses")
    p.add_argument("--view", required=True, help="a view listed in study.views")
    p.add_argument("--view-dir", type=Path, required=True, help=view_dir_help)


def add_outputs(p: argparse.ArgumentParser) -> None:
    """The outputs of every Phase F stage: the reconstruction, its record and its wall time."""
    p.add_argument("--out", type=Path, required=True, help="reconstruction .npz to write")
    p.add_argument("--report", type=Path, required=True, help="record (JSON) to write")
    p.add_argument("--timing", type=Path, required=True, help="wall time (JSON) to write; kept out of DVC")


def main(run: Callable, p: argparse.ArgumentParser, argv: list[str] | None = None, timed: bool = True) -> int:
    """Parse ``argv``, call ``run(args)``; the exit code (0, 1 for a failed check, 2 for bad input)."""
    args = p.parse_args(argv)
    start = time.perf_counter()
    try:
        run(args)
    except StudyError as exc:
        print(f"{p.prog}: error: {exc}", file=sys.stderr)
        return 2
    except CheckFailed:
        return 1
    if timed:
        print(f"{p.prog}: {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return 0
