"""Phase G's arms: which reconstructions each dose × view cell compares (read by compare and summarize only)."""

from __future__ import annotations

ARMS = ("pinn", "pinn_gs1", "ptychi", "blank")  # in the order every table lists them
FLOOR = "blank"  # the floor: a blank object (all ones), scored like every arm
LABELS = {
    "pinn": "PINN (this view's network)",
    "pinn_gs1": "PINN gridsize 1 (baseline network)",
    "ptychi": "pty-chi LSQML",
    "blank": "floor: blank object (all ones)",
}


def baseline_view(cfg) -> str | None:
    """The first view of the study with gridsize 1: its network is the gridsize-1 arm of every cell."""
    return next((v for v in cfg.study.views if cfg.view(v).gridsize == 1), None)


def arms(cfg, view: str) -> list[str]:
    """The arms of one cell: the view's own network (gridsize > 1 only), the gridsize-1 network, pty-chi,
    and the floor."""
    names = ["pinn"] if cfg.view(view).gridsize > 1 else []
    if baseline_view(cfg) is not None:
        names.append("pinn_gs1")
    return names + ["ptychi", FLOOR]
