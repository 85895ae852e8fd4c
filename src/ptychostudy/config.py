"""``ptychostudy check-params``: the whole of params.yaml validated up front (no stage depends on this module).

Each section's schema lives in its own module of ``ptychostudy.params`` and a stage validates only the
sections it reads; this command validates every section, refuses a section nobody reads, and checks the
rules that span sections no single stage reads together. Each problem is one sentence (exit code 2).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from ptychostudy import stage
from ptychostudy.params import Params, ParamsError, as_dict, check_keys, from_dict, read
from ptychostudy.params.base import BaseParams
from ptychostudy.params.compare import CompareParams
from ptychostudy.params.gradient import GradientParams
from ptychostudy.params.infer import InferParams
from ptychostudy.params.measured import MeasuredParams
from ptychostudy.params.product import ProductParams
from ptychostudy.params.reconstruct import ReconstructParams
from ptychostudy.params.refine import RefineParams
from ptychostudy.params.replicate import ReplicateParams
from ptychostudy.params.simulate import SimulateParams
from ptychostudy.params.study import StudyParams
from ptychostudy.params.train import TrainParams, check_stitch
from ptychostudy.params.tune import TuneParams
from ptychostudy.params.views import ViewsParams
from ptychostudy.params.warmstart import WarmstartParams

ConfigError = ParamsError
SECTIONS = {cls.SECTION: cls for cls in (StudyParams, BaseParams, SimulateParams, ViewsParams, TrainParams, InferParams,
                                         RefineParams, ReconstructParams, GradientParams, TuneParams, WarmstartParams,
                                         ReplicateParams,
                                         CompareParams, ProductParams, MeasuredParams)}


def config_from_dict(raw: Any) -> Params:
    """Every section of a parsed params mapping, validated, and the rules between sections."""
    if raw is None:
        raise ConfigError("params.yaml is empty")
    check_keys(raw, list(SECTIONS), "params.yaml")
    cfg = from_dict(raw, *SECTIONS.values())
    check_stitch(cfg.infer.stitch_fraction, "infer.stitch_fraction", cfg.train.support)
    for name in cfg.study.objects:  # study (every stage) does not read base: the rule between the two is here
        cfg.base.object_kind(name)
    return cfg


def load_config(path: str | Path = "params.yaml") -> Params:
    raw = read(path)
    try:
        return config_from_dict(raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def cli(args) -> None:
    """``ptychostudy check-params``: validate params.yaml and print the design."""
    cfg = load_config(args.params)
    print(yaml.safe_dump({name: as_dict(getattr(cfg, name)) for name in SECTIONS}, sort_keys=False), end="")
    print(f"{args.params}: ok")


def build_parser(prog: str = "python -m ptychostudy.config") -> argparse.ArgumentParser:
    p = stage.parser(prog, help="validate params.yaml and print the study design",
                       description="Validate params.yaml (unknown keys, types, ranges, K ≥ C, views) and print the design.")
    stage.add_params(p)
    return p


def main(argv: list[str] | None = None, prog: str = "python -m ptychostudy.config") -> int:
    return stage.main(cli, build_parser(prog), argv, timed=False)


if __name__ == "__main__":
    sys.exit(main())
