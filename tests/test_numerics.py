"""The numerical environment a stage runs in (ptychostudy/__init__.py): the same kernels on every x86-64
machine with AVX2; the OpenMP wait policy (the scale-out driver's choice) changes no bit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from conftest import write_params
from ptychostudy import NUMERICAL_PINS

ROOT = Path(__file__).resolve().parents[1]
PINS_ENV = (*NUMERICAL_PINS, "OMP_WAIT_POLICY")

REPORT = """
import json, os, sys
{first}
import ptychostudy, numpy, torch
from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
print(json.dumps({{"pinned": ptychostudy.pins_effective, "torch_isa": torch.backends.cpu.get_cpu_capability(),
                  "numpy_avx512": [f for f in ("X86_V4", "AVX512_ICL", "AVX512_SPR") if __cpu_features__.get(f)],
                  "wait": os.environ.get("OMP_WAIT_POLICY", ""),
                  "env": {{k: os.environ.get(k) for k in {keys!r}}}}}))
"""


def unpinned_env(**extra: str) -> dict:
    """This process's environment without the pins it set at import, plus ``extra``."""
    return {**{k: v for k, v in os.environ.items() if k not in PINS_ENV}, **extra}


def fresh(first: str = "", env: dict | None = None) -> dict:
    """What a fresh interpreter that imports ptychostudy (after ``first``) computes with."""
    out = subprocess.run([sys.executable, "-c", REPORT.format(first=first, keys=PINS_ENV)], capture_output=True,
                         text=True, env=unpinned_env(**(env or {})), check=True)
    return json.loads(out.stdout)


def busy_loop() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def test_a_stage_process_computes_with_avx2_kernels_at_most():
    report = fresh()
    assert report["pinned"] is True
    assert report["torch_isa"] in ("AVX2", "DEFAULT", "NO AVX")  # never the AVX-512 kernels
    assert report["numpy_avx512"] == []  # numpy's AVX-512 dispatch targets are off even on an AVX-512 CPU
    assert report["env"]["MKL_CBWR"] == "COMPATIBLE"
    assert report["env"]["ONEDNN_MAX_CPU_ISA"] == "AVX2"


def test_the_pins_win_over_the_callers_environment():
    report = fresh(env={"ATEN_CPU_CAPABILITY": "avx512", "MKL_CBWR": "AUTO"})
    assert report["env"]["ATEN_CPU_CAPABILITY"] == "avx2"
    assert report["env"]["MKL_CBWR"] == "COMPATIBLE"


def test_an_interpreter_that_loaded_numpy_first_says_the_pins_are_off():
    report = fresh(first="import numpy")
    assert report["pinned"] is False
    assert report["env"]["ATEN_CPU_CAPABILITY"] is None


def test_importing_the_package_leaves_the_wait_policy_to_the_caller():
    """The package pins arithmetic only: beside a busy core a stage keeps libgomp's default wait (the scale-out
    driver's ``--passive`` is where a shared machine asks for passive waiting), and an explicit choice is kept."""
    loop = busy_loop()
    try:
        time.sleep(0.3)
        assert fresh()["wait"] == ""
        assert fresh(env={"OMP_WAIT_POLICY": "PASSIVE"})["wait"] == "PASSIVE"
    finally:
        loop.kill()
        loop.wait()


def test_the_wait_policy_changes_no_bit_of_a_trained_bundle(tiny_views, tmp_path, params):
    """The same training job in fresh processes spinning (ACTIVE) and waiting passively, beside a busy core."""
    write_params(tmp_path / "params.yaml", params)
    bundles = []
    loop = busy_loop()
    try:
        for policy in ("ACTIVE", "PASSIVE"):
            out = tmp_path / policy
            env = unpinned_env(OMP_WAIT_POLICY=policy)
            subprocess.run([sys.executable, "-m", "ptychostudy.train", "--no-progress", "--params", "params.yaml",
                            "--object", "run1084", "--dose", "100000", "--view", "dense", "--view-dir", str(tiny_views["dense"]),
                            "--bundle", f"{policy}/wts.h5.zip", "--report", f"{policy}/r.json", "--history",
                            f"{policy}/h.csv", "--timing", f"{policy}/t.json", "--shown", f"{policy}/f.npz"],
                           cwd=tmp_path, env=env, check=True, capture_output=True)
            bundles.append((out / "wts.h5.zip").read_bytes())
    finally:
        loop.kill()
        loop.wait()
    assert bundles[0] == bundles[1]


# ---------------------------------------------------------------------------------------------
# optim.Adam: torch's update with a correctly rounded square root (torch.sqrt on the CPU is MKL's
# vector math, rounded differently on Intel and AMD: the first operation where their training parted)


def _is_correctly_rounded(x: float, r: float) -> bool:
    """r (a float32) is the float32 nearest sqrt(x), decided exactly with rationals."""
    import numpy as np
    from fractions import Fraction

    below = float(np.nextafter(np.float32(r), np.float32(0)))
    above = float(np.nextafter(np.float32(r), np.float32(np.inf)))
    lo, hi = (Fraction(r) + Fraction(below)) / 2, (Fraction(r) + Fraction(above)) / 2
    return lo * lo <= Fraction(x) <= hi * hi


def test_exact_sqrt_is_correctly_rounded():
    import torch

    from ptychostudy.optim import exact_sqrt

    g = torch.Generator().manual_seed(3)
    # Adam's second moments span many decades (1e-22 .. 1e-2 in the study's first step)
    values = torch.cat([10 ** (torch.rand(2000, generator=g) * 20 - 22), torch.tensor([0.0, 1.0, 4.0, 2.0])])
    roots = exact_sqrt(values)
    assert roots.dtype == torch.float32 and roots.shape == values.shape
    bad = [(float(x), float(r)) for x, r in zip(values, roots) if not _is_correctly_rounded(float(x), float(r))]
    assert not bad, f"{len(bad)} of {len(values)} roots not correctly rounded, e.g. {bad[:3]}"
    assert float(roots[-2]) == 2.0 and float(roots[-4]) == 0.0


def test_adam_is_torch_adam_but_for_the_square_root():
    """With torch.sqrt in the place of exact_sqrt, optim.Adam gives torch.optim.Adam's parameters bit for
    bit over 25 steps under a learning-rate schedule: the same update, so only the root's rounding changed."""
    import copy

    import torch

    from ptychostudy.optim import Adam

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 2, 3))
    ours, theirs = copy.deepcopy(net), copy.deepcopy(net)
    opt_ours = Adam(ours.parameters(), lr=3e-3, sqrt=torch.sqrt)
    opt_theirs = torch.optim.Adam(theirs.parameters(), lr=3e-3)
    scheds = [torch.optim.lr_scheduler.LambdaLR(o, lambda k: 1 / (1 + 0.1 * k)) for o in (opt_ours, opt_theirs)]
    x = torch.randn(4, 3, 16, 16)
    for _ in range(25):
        for model, opt, sched in ((ours, opt_ours, scheds[0]), (theirs, opt_theirs, scheds[1])):
            opt.zero_grad()
            (model(x) ** 2).mean().backward()
            opt.step()
            sched.step()
    assert all(torch.equal(a, b) for a, b in zip(ours.parameters(), theirs.parameters()))
    # and the default (exact) root moves the same parameters to nearly, not necessarily exactly, the same place
    exact = copy.deepcopy(net)
    opt = Adam(exact.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 1 / (1 + 0.1 * k))
    for _ in range(25):
        opt.zero_grad()
        (exact(x) ** 2).mean().backward()
        opt.step()
        sched.step()
    assert all(torch.allclose(a, b, rtol=1e-3, atol=1e-5) for a, b in zip(exact.parameters(), theirs.parameters()))


def test_adams_gpu_path_is_the_same_update_for_all_parameters_at_once():
    """``Adam.update_all`` (multi-tensor operations; what a GPU runs) moves the parameters where the per-tensor
    update with ``torch.sqrt`` does, over 25 steps under a schedule (run here on the CPU)."""
    import copy

    import torch

    from ptychostudy.optim import Adam

    class AllAtOnce(Adam):  # the GPU's branch, forced on the CPU
        def step(self, closure=None):
            with torch.no_grad():
                for group in self.param_groups:
                    self.update_all(group, self._advance(group))

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 2, 3))
    one, every = copy.deepcopy(net), copy.deepcopy(net)
    opts = [Adam(one.parameters(), lr=3e-3, sqrt=torch.sqrt), AllAtOnce(every.parameters(), lr=3e-3, sqrt=torch.sqrt)]
    scheds = [torch.optim.lr_scheduler.LambdaLR(o, lambda k: 1 / (1 + 0.1 * k)) for o in opts]
    x = torch.randn(4, 3, 16, 16)
    for _ in range(25):
        for model, opt, sched in zip((one, every), opts, scheds):
            opt.zero_grad()
            (model(x) ** 2).mean().backward()
            opt.step()
            sched.step()
    moved = [float((a - b).abs().max()) for a, b in zip(net.parameters(), one.parameters())]
    assert min(moved) > 1e-3  # the updates did move every parameter
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-7) for a, b in zip(one.parameters(), every.parameters()))


def test_adam_refuses_bad_settings():
    import pytest
    import torch

    from ptychostudy.optim import Adam

    for kwargs in ({"lr": 0.0}, {"lr": 1e-3, "eps": 0.0}, {"lr": 1e-3, "betas": (0.9, 1.0)}):
        with pytest.raises(ValueError, match="Adam"):
            Adam([torch.zeros(2, requires_grad=True)], **kwargs)


def test_training_and_gradient_solver_use_the_exact_root():
    import ast

    for module in ("training.py", "gradient_solver.py"):
        tree = ast.parse((ROOT / "src" / "ptychostudy" / module).read_text())
        names = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        assert "Adam" not in names, f"{module} still calls torch.optim.Adam"
        assert any(isinstance(n, ast.ImportFrom) and n.module == "ptychostudy.optim" for n in ast.walk(tree)), module
