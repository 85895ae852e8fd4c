"""The machine record every benchmark writes beside its figures: CPU model, cores, versions, date."""

from __future__ import annotations

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
