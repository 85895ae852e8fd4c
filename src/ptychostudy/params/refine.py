"""params ``refine``: the test-time refinement arm ``pinn_refined`` (module refine.py): each view's trained
network fine-tuned, self-supervised through the physics, on the test split's own patterns (never their truth)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ptychostudy.params import ParamsError, Section, key
from ptychostudy.params.study import StudyParams, per_view


@dataclass(frozen=True)
class RefineParams(Section):
    SECTION = "refine"
    NEEDS = (StudyParams,)

    steps: Mapping[str, int] = key("each view name to its number of Adam steps on the test split", min=1, max=10_000_000)
    checkpoints: tuple[float, ...] = key("fractions of refine.steps from 0 to 1 at which the curve is recorded")
    batch_size: int = key("groups per step", min=1, max=65_536)
    learning_rate: float = key("cosine decay from this ...", gt=0)
    learning_rate_final: float = key("... to this at the last step", gt=0)
    seed: int = key("batch order (derived per cell with the dose and view)", min=0)
    threads: int = key("torch threads", min=1, max=256)
    accelerator: str = key("where the network runs", choices=("cpu", "cuda"))

    def check(self, p) -> None:
        per_view(p, "refine.steps", self.steps)
        c = list(self.checkpoints)
        if c[0] != 0.0 or c[-1] != 1.0 or c != sorted(set(c)):
            raise ParamsError(f"refine.checkpoints must be increasing fractions of refine.steps from 0.0 (the trained "
                              f"network) to 1.0 (the arm's object), got {c}")
        if not self.learning_rate_final <= self.learning_rate:
            raise ParamsError(f"refine.learning_rate ({self.learning_rate}) and refine.learning_rate_final "
                              f"({self.learning_rate_final}) must satisfy 0 < learning_rate_final ≤ learning_rate")
