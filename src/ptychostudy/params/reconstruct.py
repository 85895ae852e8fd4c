"""params ``reconstruct``: Phase F's pty-chi arms (module reconstruct.py): the arm ``ptychi`` as configured here;
``ptychi_tuned`` takes batch size, seed and threads from here and the rest from the tune stage's selection."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ptychostudy.params import ParamsError, Section, key
from ptychostudy.params.study import StudyParams, per_view

NOISE_MODELS = ("gaussian", "poisson")


def check_momentum(momentum: float, key: str) -> None:
    if not 0.0 <= momentum < 1.0:
        raise ParamsError(f"{key}.momentum must lie in [0, 1) (0 = off), got {momentum}")


@dataclass(frozen=True)
class PtychiSetting:
    """One pty-chi LSQML setting (batch size, seed and threads from ``reconstruct``)."""

    noise_model: str = key("LSQML's likelihood", choices=NOISE_MODELS)
    tv_weight: float = key("pty-chi's object total-variation regulariser (0 = off)", min=0, max=1e6)
    momentum: float = key("LSQML object momentum (0 = off: random batches; > 0: compact batches)")


@dataclass(frozen=True)
class ReconstructParams(Section):
    SECTION = "reconstruct"
    NEEDS = (StudyParams,)

    epochs: Mapping[str, int] = key("each view name to its number of epochs", min=1, max=100_000)
    batch_size: int = key("positions per LSQML mini-batch (both pty-chi arms)", min=1, max=1_000_000)
    noise_model: str = key("LSQML's likelihood", choices=NOISE_MODELS)
    momentum: float = key("LSQML object momentum (0 = off: random batches; > 0: compact batches)")
    seed: int = key("pty-chi's random seed (batch order)", min=0)
    threads: int = key("torch threads", min=1, max=256)

    def check(self, p) -> None:
        per_view(p, "reconstruct.epochs", self.epochs)
        check_momentum(self.momentum, "reconstruct")
