"""ptychostudy: a reproducible DVC pipeline for a synthetic ptychography dose/overlap study.

Importing the package pins the numerical environment of the process before numpy and torch load
(they read these variables once, at load time), so that every stage computes the same bits on
every x86-64 machine with AVX2, with or without AVX-512 (measured in README, "Determinism"):

- ``MKL_CBWR=COMPATIBLE``: Intel MKL (torch's CPU FFT) otherwise picks code paths by memory
  alignment (about one process in six trained different last bits) and by CPU kind;
- ``ATEN_CPU_CAPABILITY=avx2``, ``ONEDNN_MAX_CPU_ISA=AVX2``: torch's own vectorised kernels and
  oneDNN's convolution kernels stop at AVX2 (on AVX-512 CPUs they otherwise take 512-bit paths
  whose rounding differs: all nine bundles and pty-chi objects changed between machine kinds);
- ``NPY_DISABLE_CPU_FEATURES``: numpy's AVX-512 kernels off (its AVX-512 transcendentals changed
  one pixel of a simulation figure); ``OPENBLAS_CORETYPE=Haswell``: numpy/scipy's BLAS kernel fixed.

None of these is a design constant of the study (params.yaml holds those): they say which
arithmetic the design is computed with, like the pinned requirements.

The OpenMP wait policy changes speed only, never results: a process started while other work keeps
a core busy waits passively (``OMP_WAIT_POLICY=PASSIVE``), so that its threads hand a core back
instead of spinning on it while a sibling thread waits for CPU time; alone it keeps libgomp's
default (spin, then sleep), which is faster on an idle machine. An explicit setting is kept, and a
process that a scheduler started on cores it holds for it (``ptychostudy run`` sets
``PTYCHOSTUDY_CORES_HELD``) keeps the default without sampling: the load it would see is the
scheduler's own bookkeeping and the other stages, which run on other cores.
"""

import os
import sys
import time

__version__ = "0.1.0"

NUMERICAL_PINS = {
    "MKL_CBWR": "COMPATIBLE",
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
    "OPENBLAS_CORETYPE": "Haswell",
}
BUSY_CORES = 0.5  # other processes' CPU use (cores' worth) from which OpenMP threads wait passively
BUSY_SAMPLE_S = 0.2  # how long that use is sampled at import
CORES_HELD = "PTYCHOSTUDY_CORES_HELD"  # set by a scheduler to the cores it holds for this process


def _busy_jiffies() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs from /proc/stat; niced work and hypervisor steal are not
    'busy': a niced neighbour yields its core at once, and steal is no neighbour of ours."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, idle, iowait, irq, softirq = fields[:7]
    steal = fields[7] if len(fields) > 7 else 0
    return user + system + irq + softirq, user + nice + system + idle + iowait + irq + softirq + steal


def others_busy_cores(seconds: float = BUSY_SAMPLE_S) -> float:
    """Cores' worth of CPU time other processes used over ``seconds`` (this one sleeps meanwhile);
    0 where /proc/stat cannot be read."""
    first = _busy_jiffies()
    if first is None:
        return 0.0
    time.sleep(seconds)
    second = _busy_jiffies()
    if second is None or second[1] <= first[1]:
        return 0.0
    return (second[0] - first[0]) / (second[1] - first[1]) * (os.cpu_count() or 1)


def _pin_environment() -> bool:
    """Set the pins; False (nothing set) where numpy or torch loaded first: too late for this process."""
    if "numpy" in sys.modules or "torch" in sys.modules:
        return False
    os.environ.update(NUMERICAL_PINS)
    if not os.environ.get("OMP_WAIT_POLICY") and not os.environ.get(CORES_HELD) and others_busy_cores() >= BUSY_CORES:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return True


pins_effective = _pin_environment()


class StudyError(Exception):
    """An error caused by the user's input (params, data files, bundles).

    The command line prints its message as one sentence and exits with code 2.
    """


class CheckFailed(Exception):
    """A check (``ptychostudy verify``) found problems and printed them: exit code 1."""
