"""``ptychostudy check-data`` and ``check-bundle``: validate files with the study's own loaders, for people.

No stage runs this module (a change to its words reruns nothing); the loaders it calls are the ones
every stage uses (``dataset.read_dataset``, ``bundle.load_bundle``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ptychostudy import stage
from ptychostudy.bundle import load_bundle
from ptychostudy.dataset import read_dataset


def check_data(args) -> None:
    """``ptychostudy check-data FILE...``: validate each file against the contract."""
    for path in args.files:
        arrays = read_dataset(path)
        print(f"{path}: ok, {arrays['diffraction'].shape[0]} patterns of {arrays['diffraction'].shape[1:]}")


def check_bundle(args) -> None:
    """``ptychostudy check-bundle FILE...``: load each bundle safely and describe it."""
    for path in args.files:
        loaded = load_bundle(path)
        arch = loaded.model.arch
        count = sum(t.numel() for t in loaded.model.parameters())
        d = loaded.description
        print(f"{path}: ok, dose {d.get('dose')} view {d.get('view')}, {arch.channels} pattern(s) of "
              f"{arch.size}×{arch.size} per group on a {arch.canvas}×{arch.canvas} frame, {arch.inputs} input, {count} parameters")


def build_parser(prog: str = "python -m ptychostudy.check") -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog=prog, description="Validate data (.npz) or bundle (wts.h5.zip) files.")
    sub = top.add_subparsers(dest="kind", required=True, metavar="KIND")
    p = sub.add_parser("data", help="validate .npz files against the data contract",
                       description="Check that each .npz file follows the data contract (keys, dtypes, shapes, "
                       "finite values, JSON metadata, no pickle). Exit code 2 on the first broken file.")
    p.add_argument("files", nargs="+", type=Path)
    p = sub.add_parser("bundle", help="load trained bundles (wts.h5.zip) safely and describe them",
                       description="Load each wts.h5.zip with load_bundle: member names checked before anything is "
                       "read (no path traversal, no unexpected or pickled members), JSON description and HDF5 weights "
                       "parsed in memory, the network rebuilt from this package's code and its weights checked. "
                       "Nothing is extracted and nothing from the bundle is executed. Exit code 2 on the first bad one.")
    p.add_argument("files", nargs="+", type=Path)
    return top


def cli(args) -> None:
    if args.kind == "data":
        check_data(args)
    else:
        check_bundle(args)


def main(argv: list[str] | None = None, prog: str = "python -m ptychostudy.check") -> int:
    return stage.main(cli, build_parser(prog), argv, timed=False)


if __name__ == "__main__":
    sys.exit(main())
