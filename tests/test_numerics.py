"""The numerical environment a stage runs in (ptychostudy/__init__.py): the same kernels on every x86-64
machine with AVX2, and an OpenMP wait policy that follows other processes' load without changing a bit."""

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


def test_a_busy_core_is_measured_and_makes_openmp_wait_passively():
    from ptychostudy import BUSY_CORES, others_busy_cores

    loop = busy_loop()
    try:
        time.sleep(0.5)
        assert others_busy_cores(0.3) >= BUSY_CORES
        assert fresh()["wait"] == "PASSIVE"
        assert fresh(env={"OMP_WAIT_POLICY": "ACTIVE"})["wait"] == "ACTIVE"  # an explicit choice is kept
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
            subprocess.run([sys.executable, "-m", "ptychostudy", "--no-progress", "train", "--params", "params.yaml",
                            "--dose", "100000", "--view", "dense", "--view-dir", str(tiny_views["dense"]),
                            "--bundle", f"{policy}/wts.h5.zip", "--report", f"{policy}/r.json", "--history",
                            f"{policy}/h.csv", "--timing", f"{policy}/t.json", "--figure", f"{policy}/f.png"],
                           cwd=tmp_path, env=env, check=True, capture_output=True)
            bundles.append((out / "wts.h5.zip").read_bytes())
    finally:
        loop.kill()
        loop.wait()
    assert bundles[0] == bundles[1]


def test_busy_time_leaves_out_niced_work_and_steal(monkeypatch, tmp_path):
    import ptychostudy

    stat = tmp_path / "stat"
    stat.write_text("cpu  100 900 50 1000 0 0 0 300 0 0\n")
    real_open = open
    monkeypatch.setattr("builtins.open", lambda p, *a, **k: real_open(stat if p == "/proc/stat" else p, *a, **k))
    busy, total = ptychostudy._busy_jiffies()
    assert busy == 150  # user + system; nice (900) and steal (300) are no busy neighbour
    assert total == 100 + 900 + 50 + 1000 + 300
