"""The quick run: the whole pipeline on a small profile, in a scratch workspace of its own.

``ptychostudy demo [--profile profiles/tiny.yaml] [--dir FOLDER]`` copies what the pipeline needs
(dvc.yaml, the code, the real input data, the pinned requirements, the DVC settings) into a new git +
DVC repository, writes the profile merged into params.yaml as that workspace's params.yaml, runs every
stage there with the scale-out driver (``ptychostudy run``), checks it with ``ptychostudy verify`` and
``dvc status``, and prints where the summary is. The project's own work tree, dvc.lock and DVC cache are
not touched. The tests build their end-to-end study with the same workspace and the same profile file.

A profile lists only the keys that differ from params.yaml; a key params.yaml does not have is an error
(a misspelt key would otherwise be silently ignored).
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from ptychostudy import StudyError

ROOT = Path(__file__).resolve().parents[2]
TINY = Path("profiles/tiny.yaml")
COPIED_FILES = ("dvc.yaml", ".gitignore", ".dvcignore", "requirements.lock.txt", "requirements.nodeps.txt", "Makefile")
COPIED_DIRS = ("data/base", "src")


def merged(base: dict, overlay: dict, where: str = "") -> dict:
    """``base`` with ``overlay``'s values: mappings merged key by key, anything else replaced."""
    out = copy.deepcopy(base)
    for key, value in overlay.items():
        name = f"{where}.{key}" if where else str(key)
        if not isinstance(base, dict) or key not in base:
            raise StudyError(f"the profile sets {name}, which params.yaml does not have (a misspelt key?)")
        if isinstance(value, dict) and isinstance(base[key], dict):
            out[key] = merged(base[key], value, name)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _yaml(path: Path) -> dict:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StudyError(f"{path}: no such file") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise StudyError(f"{path}: not readable YAML ({exc})") from None
    if not isinstance(loaded, dict):
        raise StudyError(f"{path}: must be a mapping of params sections")
    return loaded


def profile_params(profile: str | Path = ROOT / TINY, params: str | Path = ROOT / "params.yaml") -> dict:
    """params.yaml with a profile's keys, validated as a stage would validate it."""
    from ptychostudy.config import config_from_dict

    design = merged(_yaml(Path(params)), _yaml(Path(profile)))
    config_from_dict(design)  # the params error a stage would raise, now
    return design


def tool_env(work: Path) -> dict:
    """The environment of the workspace's commands: this interpreter's tools first, DVC kept quiet and local."""
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env["DVC_NO_ANALYTICS"] = "1"
    env["DVC_SITE_CACHE_DIR"] = str(work / ".dvc" / "tmp" / "site-cache")  # as the Makefile sets it
    env.setdefault("GIT_AUTHOR_NAME", "ptychostudy demo")
    env.setdefault("GIT_COMMITTER_NAME", env["GIT_AUTHOR_NAME"])
    env.setdefault("GIT_AUTHOR_EMAIL", "demo@localhost")
    env.setdefault("GIT_COMMITTER_EMAIL", env["GIT_AUTHOR_EMAIL"])
    return env


def _run(args: list[str], cwd: Path, env: dict) -> None:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise StudyError(f"`{' '.join(args)}` failed in {cwd} ({result.returncode}): {(result.stderr or result.stdout).strip()}")


def make_workspace(work: Path, params: dict, env: dict, root: Path = ROOT) -> Path:
    """A new git + DVC repository at ``work`` holding the pipeline, its inputs and ``params``, committed."""
    if work.exists() and any(work.iterdir()):
        raise StudyError(f"{work}: not empty; the workspace must be a new folder")
    work.mkdir(parents=True, exist_ok=True)
    for name in COPIED_FILES:
        if (root / name).exists():
            shutil.copy(root / name, work / name)
    for name in COPIED_DIRS:
        shutil.copytree(root / name, work / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    _run(["git", "init", "-q", "-b", "main"], work, env)
    _run([sys.executable, "-m", "dvc", "init", "-q"], work, env)
    shutil.copy(root / ".dvc" / "config", work / ".dvc" / "config")  # the project's DVC settings (plots.out_dir, ...)
    _run(["git", "add", "-A"], work, env)
    _run(["git", "commit", "-qm", "ptychostudy workspace"], work, env)
    return work


def build_parser(prog: str = "python -m ptychostudy.demo") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0] + " Prints where the summary is.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--profile", type=Path, default=ROOT / TINY, help="the profile: keys that differ from params.yaml")
    p.add_argument("--params", type=Path, default=ROOT / "params.yaml", help="the design the profile changes")
    p.add_argument("--dir", type=Path, help="the workspace, a new folder (default: a new temporary folder)")
    p.add_argument("--jobs", type=int, default=2, help="stages at once (ptychostudy run --jobs)")
    return p


def main(argv: list[str] | None = None, prog: str = "python -m ptychostudy.demo") -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        params = profile_params(args.profile, args.params)
        work = (args.dir or Path(tempfile.mkdtemp(prefix="ptychostudy-demo-"))).resolve()
        env = tool_env(work)
        make_workspace(work, params, env)
    except StudyError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    doses, views = params["study"]["doses"], params["study"]["views"]
    print(f"demo: profile {args.profile} ({len(doses)} doses × {len(views)} views) in {work}", flush=True)
    start = time.monotonic()
    for step in (["run", "--jobs", str(args.jobs)], ["verify"]):
        code = subprocess.run([sys.executable, "-m", "ptychostudy", *step], cwd=work, env=env).returncode
        if code != 0:
            print(f"{prog}: error: `ptychostudy {' '.join(step)}` failed (exit {code}) in {work}; "
                  f"each stage's log is in {work / '.dvc/tmp/scaleout'}", file=sys.stderr)
            return 1
    status = subprocess.run([sys.executable, "-m", "dvc", "status"], cwd=work, env=env, capture_output=True, text=True)
    print(status.stdout.strip())
    print(f"demo: done in {time.monotonic() - start:.0f} s. The summary: {work / 'reports/summary.md'} "
          f"(every metric: {work / 'reports/study_metrics.csv'})")
    return 0 if status.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
