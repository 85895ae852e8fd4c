"""params ``gradient``: Phase F's Poisson-likelihood gradient solver (module gradient.py, arm ``gradient``)."""

from __future__ import annotations

from dataclasses import dataclass

from ptychostudy.params import ParamsError, Section, key


@dataclass(frozen=True)
class GradientParams(Section):
    SECTION = "gradient"

    levels: tuple[int, ...] = key("object grid factors (px per sample), coarse to fine")
    steps_per_level: int = key("Adam steps at each level", min=1, max=1_000_000)
    batch: int = key("patterns per step", min=1, max=1_000_000)
    learning_rate: float = key("Adam's step", gt=0)
    seed: int = key("batch order (derived with the dose and view)", min=0)
    threads: int = key("torch threads", min=1, max=256)

    def check(self, p) -> None:
        if any(f < 1 for f in self.levels) or list(self.levels) != sorted(set(self.levels), reverse=True):
            raise ParamsError(f"gradient.levels must be distinct factors ≥ 1 from coarse to fine "
                              f"(e.g. [8, 4, 2, 1]), got {list(self.levels)}")
