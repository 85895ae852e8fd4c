"""The machine record every benchmark writes beside its figures (CPU model, cores, versions, date), and the one reader
and writer of bench/results.json."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path


def machine() -> dict:
    import numpy as np
    import torch

    model = ""
    if Path("/proc/cpuinfo").is_file():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cpu": model or platform.processor(), "cores": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "numpy": np.__version__, "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


RESULTS = Path(__file__).resolve().parent / "results.json"


def load_results() -> dict:
    """bench/results.json as a dict (empty when there is none yet)."""
    return json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}


def save_result(key: str, value) -> None:
    """Set bench/results.json's entry ``key`` to ``value``, every other entry kept (sorted keys, 2-space indent)."""
    results = load_results()
    results[key] = value
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
