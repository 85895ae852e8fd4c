"""Phase G's arms: which reconstructions each dose × view cell compares (read by compare and summarize only)."""

from __future__ import annotations

from ptychostudy.layout import ITERATIVE_ARMS, REFINED_ARM, WARMSTART_ARMS

NETWORK_ARMS = ("pinn", "pinn_gs1")  # trained on the train split only: they never saw the test patterns
REFINED = (REFINED_ARM,)  # the view's network fine-tuned on the test split's own patterns (no truth): it saw them
TUNED_ITERATIVE = ("ptychi_tuned", "gradient")  # settings selected on the train split's truth (calibration protocol)
HELDOUT_ITERATIVE = ("ptychi_heldout", "gradient_heldout")  # the same solvers selected without truth (held-out NLL)
PROTOCOL_PAIRS = {"pty-chi": ("ptychi_tuned", "ptychi_heldout"), "gradient solver": ("gradient", "gradient_heldout")}
FLOOR = "blank"  # the floor: a blank object (all ones), scored like every arm
ARMS = ("pinn", REFINED_ARM, "pinn_gs1") + ITERATIVE_ARMS + WARMSTART_ARMS + (FLOOR,)  # in the order every table lists them
LABELS = {
    "pinn": "PINN (this view's network)",
    REFINED_ARM: "PINN refined on the test split's own patterns (self-supervised, no truth; it saw the test patterns)",
    "pinn_gs1": "PINN gridsize 1 (baseline network)",
    "ptychi": "pty-chi LSQML as the original study configured it (Gaussian noise model, no regulariser)",
    "ptychi_tuned": "pty-chi LSQML tuned on the train split's truth (calibration: noise model, TV weight, momentum, epochs)",
    "ptychi_heldout": "pty-chi LSQML tuned without truth (held-out train patterns' Poisson NLL)",
    "gradient": "Poisson-likelihood gradient solver, coarse-to-fine object (stop chosen on the train split's truth)",
    "gradient_heldout": "the gradient solver stopped where the held-out train patterns' Poisson NLL is lowest (no truth)",
    "pinn_ptychi": "pty-chi LSQML with the tuned (calibration) settings, started from the view's network's object",
    "pinn_gradient": "the gradient solver's last tuned level, started from the view's network's object",
    "blank": "floor: blank object (all ones)",
}


def network_arm(cfg, view: str) -> str:
    """The name the view's own network has in Phase G (``pinn``, or ``pinn_gs1`` for a gridsize-1 view)."""
    return "pinn" if cfg.view(view).gridsize > 1 else "pinn_gs1"


def baseline_view(cfg, obj: str) -> str | None:
    """The first view an object runs on with gridsize 1: its network is the gridsize-1 arm of the object's cells
    (none where the object's subset holds no such view)."""
    return next((v for v in cfg.study.object_views(obj) if cfg.view(v).gridsize == 1), None)


def arms(cfg, obj: str, view: str) -> list[str]:
    """The arms of one cell: the view's own network (gridsize > 1 only), that network refined on the test
    patterns (every view: the baseline view's own network is the gridsize-1 one), the gridsize-1 network (where
    the object runs a gridsize-1 view), the iterative arms, the tuned solvers started from the view's own network
    (every cell has one), and the floor."""
    names = ["pinn"] if cfg.view(view).gridsize > 1 else []
    names.append(REFINED_ARM)
    if baseline_view(cfg, obj) is not None:
        names.append("pinn_gs1")
    return names + list(ITERATIVE_ARMS) + list(WARMSTART_ARMS) + [FLOOR]
