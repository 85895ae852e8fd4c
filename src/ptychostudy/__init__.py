"""ptychostudy: a reproducible DVC pipeline for a synthetic ptychography dose/overlap study."""

__version__ = "0.1.0"


class StudyError(Exception):
    """An error caused by the user's input (params, data files, bundles).

    The command line prints its message as one sentence and exits with code 2.
    """
