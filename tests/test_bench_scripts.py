"""The benchmark scripts stay runnable: each one's imports name what ptychostudy has today."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

IMPORT_ALL = """
import importlib.util, json, sys, traceback
from pathlib import Path
bench = Path(sys.argv[1])
sys.path.insert(0, str(bench))
failed = {}
for path in sorted(bench.glob("*.py")):
    spec = importlib.util.spec_from_file_location(f"bench_{path.stem}", path)
    try:
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
    except BaseException:
        failed[path.name] = traceback.format_exc(limit=1).strip().splitlines()[-1]
print(json.dumps({"read": len(list(bench.glob("*.py"))), "failed": failed}))
"""


def test_every_bench_script_imports():
    """Every bench/*.py loads as a module (its ``main`` is not run): a benchmark whose imports drifted from the
    package (a moved or removed function) fails here, in CI, instead of when someone next runs it."""
    result = subprocess.run([sys.executable, "-c", IMPORT_ALL, str(ROOT / "bench")], capture_output=True, text=True,
                            cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["read"] >= 10  # the folder was found
    assert report["failed"] == {}, report["failed"]
