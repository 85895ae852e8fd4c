"""params ``warmstart``: the network-started solvers (module warmstart.py, arms ``pinn_ptychi`` and ``pinn_gradient``):
the view's network's test-split object as the starting guess of the tuned iterative solvers, each beside the same
solver started blank, scored at checkpoints for quality against wall time (nothing is selected from those scores)."""

from __future__ import annotations

from dataclasses import dataclass

from ptychostudy.params import ParamsError, Section, key


@dataclass(frozen=True)
class WarmstartParams(Section):
    SECTION = "warmstart"

    checkpoints: tuple[float, ...] = key("fractions of each run (pty-chi epochs; the gradient solver's steps of a "
                                         "level) from 0 to 1 at which both starts are scored")
    threads: int = key("torch threads of the stage (pty-chi and the gradient solver)", min=1, max=256)

    def check(self, p) -> None:
        c = list(self.checkpoints)
        if not c or c[0] != 0.0 or c[-1] != 1.0 or c != sorted(set(c)):
            raise ParamsError(f"warmstart.checkpoints must be increasing fractions from 0.0 (the starting object) to "
                              f"1.0 (the arm's object), got {c}")


def marks(total: int, fractions) -> list[int]:
    """The whole counts (of epochs or steps) at the fractions of ``total``; 0 is the start. Phase F's
    ``ptychi_tuned`` run keeps its objects at these epochs (the blank start's curve), the warmstart stage
    scores its runs there."""
    return sorted({int(round(f * total)) for f in fractions})
