"""ptychostudy: a reproducible DVC pipeline for a synthetic ptychography dose/overlap study."""

import os

__version__ = "0.1.0"

# Intel MKL (torch's CPU FFT) picks code paths by memory alignment unless told otherwise, and
# then about one process in six trained a network whose weights differed in the last bits.
# Conditional numerical reproducibility fixes the path; MKL reads this at its first call.
if not os.environ.get("MKL_CBWR"):
    os.environ["MKL_CBWR"] = "COMPATIBLE"


class StudyError(Exception):
    """An error caused by the user's input (params, data files, bundles).

    The command line prints its message as one sentence and exits with code 2.
    """


class CheckFailed(Exception):
    """A check (``ptychostudy verify``) found problems and printed them: exit code 1."""
