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
arithmetic the design is computed with, like the pinned requirements. This module is in every
stage's dependencies: it holds nothing else.
"""

import os
import sys

__version__ = "0.1.0"

NUMERICAL_PINS = {
    "MKL_CBWR": "COMPATIBLE",
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
    "OPENBLAS_CORETYPE": "Haswell",
}


def _pin_environment() -> bool:
    """Set the pins; False (nothing set) where numpy or torch loaded first: too late for this process."""
    if "numpy" in sys.modules or "torch" in sys.modules:
        return False
    os.environ.update(NUMERICAL_PINS)
    return True


pins_effective = _pin_environment()


class StudyError(Exception):
    """An error caused by the user's input (params, data files, bundles).

    The command line prints its message as one sentence and exits with code 2.
    """


class CheckFailed(Exception):
    """A check (``ptychostudy verify``) found problems and printed them: exit code 1."""
