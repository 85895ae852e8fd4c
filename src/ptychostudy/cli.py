"""The ``ptychostudy`` command, for people: one word per phase, each handed to its module's own entry point.

DVC's stages do not pass through here: dvc.yaml runs ``python -m ptychostudy.<module> ...``, so this
module is in no stage's dependencies. ``ptychostudy train ...`` and ``python -m ptychostudy.train ...``
take the same arguments and do the same thing; ``ptychostudy COMMAND --help`` shows them.
"""

from __future__ import annotations

import importlib
import sys

from ptychostudy import __version__

COMMANDS = {  # command -> (module whose main(argv, prog) serves it, words put before the arguments, one line of help)
    "check-params": ("ptychostudy.config", [], "validate params.yaml and print the study design"),
    "base": ("ptychostudy.base", [], "check the real probe and object (sha256), zoom them, write the prepared base"),
    "simulate": ("ptychostudy.simulate", [], "Phase C: simulate the diffraction data of one dose"),
    "views": ("ptychostudy.views", [], "Phase D: one overlap view (baseline, dense, sparse, ...) of one dose"),
    "train": ("ptychostudy.train", [], "Phase E: train the network of one dose × view"),
    "tune": ("ptychostudy.tune", [], "select the tuned iterative arms' settings on the train split of one dose × view"),
    "reconstruct": ("ptychostudy.reconstruct", [], "Phase F: pty-chi LSQML on the test split of one dose × view (one arm)"),
    "gradient": ("ptychostudy.gradient", [], "Phase F: the Poisson-likelihood gradient solver on the test split of one dose × view"),
    "refine": ("ptychostudy.refine", [], "the pinn_refined arm: the view's network fine-tuned on the test split's own patterns"),
    "replicate": ("ptychostudy.replicate", [], "the seed-to-seed spread of every arm in one dose × view (other seeds)"),
    "infer": ("ptychostudy.infer", [], "the networks of one dose × view reconstruct its test split (for Phase G and the products)"),
    "compare": ("ptychostudy.compare", [], "Phase G: score every arm of one dose × view against the ground truth"),
    "product": ("ptychostudy.product", [], "ptychodus product files (HDF5) of every object of one dose × view"),
    "measured-ptychi": ("ptychostudy.measured_ptychi", [], "measured data: pty-chi's tuned arm on one half of the scan, probe refined"),
    "measured-pinn": ("ptychostudy.measured_pinn", [], "measured data: the network trained on half A, applied to half B"),
    "measured-compare": ("ptychostudy.measured_compare", [], "measured data: agreement of the reconstructions (FRC, phase r), figure"),
    "summarize": ("ptychostudy.summary", [], "the metrics stage: study summary from the per-stage reports"),
    "verify": ("ptychostudy.verify", [], "check every bundle against dvc.lock (md5) and the training manifest (SHA256)"),
    "check-bundle": ("ptychostudy.check", ["bundle"], "load trained bundles (wts.h5.zip) safely and describe them"),
    "check-data": ("ptychostudy.check", ["data"], "validate .npz files against the data contract"),
    "run": ("ptychostudy.scaleout", [], "the pipeline's stale stages, several at a time (here, SLURM or PBS)"),
    "demo": ("ptychostudy.demo", [], "the quick run: the whole pipeline on profiles/tiny.yaml in a scratch workspace"),
    "reruns": ("ptychostudy.reruns", [], "what a change of each params key or file reruns, computed (docs/reruns.md)"),
    "dag": ("ptychostudy.dag", [], "the pipeline's picture, one box per kind of stage (docs/pipeline.md)"),
}

USAGE = """usage: ptychostudy [--version] [--no-progress] COMMAND [ARGS ...]

Synthetic ptychography dose/overlap study, run as a DVC pipeline.

Normally you run `dvc repro` (or `ptychostudy run`, several stages at a time), which calls each
phase's module with the paths written in dvc.yaml and the design in params.yaml. Each command
validates the params it reads first; any problem with params or input files is one sentence on
stderr and exit code 2, and nothing is written. `ptychostudy COMMAND --help` explains one.

commands:
"""


def usage() -> str:
    width = max(map(len, COMMANDS))
    return USAGE + "".join(f"  {name:<{width}}  {help}\n" for name, (_, _, help) in COMMANDS.items())


def main(argv: list[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    flags = []
    while words and words[0].startswith("-"):
        flags.append(words.pop(0))
    if "--version" in flags:
        print(f"ptychostudy {__version__}")
        return 0
    unknown = [f for f in flags if f not in ("--no-progress", "-h", "--help")]
    if unknown:
        print(f"ptychostudy: error: unknown option {unknown[0]}; the options are --version and --no-progress "
              "(ptychostudy --help)", file=sys.stderr)
        return 2
    if not words or {"-h", "--help"} & set(flags):
        asked = {"-h", "--help"} & set(flags)
        print(usage(), end="", file=sys.stdout if asked else sys.stderr)
        return 0 if asked else 2
    command, rest = words[0], words[1:]
    if command not in COMMANDS:
        close = [name for name in COMMANDS if name.startswith(command[:3])] if command else []
        print(f"ptychostudy: error: unknown command {command[:40]!r}"
              + (f" (did you mean {' or '.join(close[:3])}?)" if close else "")
              + "; `ptychostudy --help` lists the commands", file=sys.stderr)
        return 2
    module, before, _ = COMMANDS[command]
    if "--no-progress" in flags and command not in ("run", "check-params", "verify", "check-bundle", "check-data"):
        rest = ["--no-progress", *rest]
    return importlib.import_module(module).main(before + rest, prog=f"ptychostudy {command}")
