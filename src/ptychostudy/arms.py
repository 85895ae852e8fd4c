"""Phase G's arms: which reconstructions each dose × view cell compares (read by compare and summarize only)."""

from __future__ import annotations

from ptychostudy.layout import ITERATIVE_ARMS

NETWORK_ARMS = ("pinn", "pinn_gs1")
TUNED_ITERATIVE = ("ptychi_tuned", "gradient")  # settings selected on the train split (the tune stage)
FLOOR = "blank"  # the floor: a blank object (all ones), scored like every arm
ARMS = NETWORK_ARMS + ITERATIVE_ARMS + (FLOOR,)  # in the order every table lists them
LABELS = {
    "pinn": "PINN (this view's network)",
    "pinn_gs1": "PINN gridsize 1 (baseline network)",
    "ptychi": "pty-chi LSQML as the original study configured it (Gaussian noise model, no regulariser)",
    "ptychi_tuned": "pty-chi LSQML tuned on the train split (noise model, TV weight, momentum, epochs)",
    "gradient": "Poisson-likelihood gradient solver, coarse-to-fine object (stop tuned on the train split)",
    "blank": "floor: blank object (all ones)",
}


def baseline_view(cfg) -> str | None:
    """The first view of the study with gridsize 1: its network is the gridsize-1 arm of every cell."""
    return next((v for v in cfg.study.views if cfg.view(v).gridsize == 1), None)


def arms(cfg, view: str) -> list[str]:
    """The arms of one cell: the view's own network (gridsize > 1 only), the gridsize-1 network, the
    iterative arms, and the floor."""
    names = ["pinn"] if cfg.view(view).gridsize > 1 else []
    if baseline_view(cfg) is not None:
        names.append("pinn_gs1")
    return names + list(ITERATIVE_ARMS) + [FLOOR]
