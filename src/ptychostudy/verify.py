"""``ptychostudy verify``: every bundle against ``dvc.lock`` (md5) and the training manifest (SHA256).

Lists each problem as one line — a bundle missing from disk, a bundle whose bytes changed, a
bundle on disk that neither ``dvc.lock`` nor the manifest knows — and returns them; the command
exits 1 when there is any.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import yaml

from ptychostudy import CheckFailed, StudyError, stage
from ptychostudy.io import file_digest
from ptychostudy.layout import BUNDLE as BUNDLE_NAME
from ptychostudy.layout import bundle_path


def _no_file(path: Path, what: str) -> StudyError:
    """A missing file, with the likelier cause when this is not the project's root."""
    if not Path("dvc.yaml").is_file():
        return StudyError(f"{path}: no such file, and no dvc.yaml here: run `ptychostudy verify` in the project's root "
                          "(the folder with dvc.yaml), or give --lock, --manifest and --models")
    return StudyError(f"{path}: no such file; {what}")


def _text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise StudyError(f"{path}: not UTF-8 text (a {what} was expected)") from None
    except IsADirectoryError:
        raise StudyError(f"{path}: a folder, not a {what}") from None


def _locked_bundles(lock_path: Path) -> dict[str, dict]:
    if not lock_path.exists():
        raise _no_file(lock_path, "run `dvc repro` first")
    try:
        lock = yaml.safe_load(_text(lock_path, "dvc.lock"))
        stages = lock["stages"]
        locked = {out["path"]: out for stage in stages.values() for out in stage.get("outs", [])
                  if str(out["path"]).endswith(BUNDLE_NAME)}
    except (yaml.YAMLError, KeyError, TypeError, AttributeError) as exc:
        raise StudyError(f"{lock_path}: not a readable dvc.lock ({str(exc)[:200]})".replace("\n", " ")) from None
    for path, out in locked.items():
        if not isinstance(out.get("md5"), str):
            raise StudyError(f"{lock_path}: the entry of {path} has no md5 (a dvc.lock written by DVC always has one)")
    return locked


def _listed_bundles(manifest_path: Path) -> tuple[dict[str, dict], set[str]]:
    """(path -> job) for trained jobs, and the paths of skipped jobs' bundles."""
    if not manifest_path.exists():
        raise _no_file(manifest_path, "run `dvc repro` (the summarize stage) first, or `dvc pull`")
    try:
        manifest = json.loads(_text(manifest_path, "training manifest"))
        root = manifest["artifact_dir"]
        jobs = {f"{root}/{job['bundle']}": job for job in manifest["jobs"]}
        skipped = {bundle_path(root, s["object"], s["dose"], s["view"]).as_posix() for s in manifest["skipped"]}
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise StudyError(f"{manifest_path}: not a readable training manifest ({str(exc)[:200]})") from None
    for path, job in jobs.items():
        if not isinstance(job.get("sha256"), str) or not isinstance(job.get("bytes"), int):
            raise StudyError(f"{manifest_path}: the job of {path} lacks its sha256 or bytes (the summarize stage writes both)")
    return jobs, skipped


def verify(lock_path="dvc.lock", manifest_path="reports/training_manifest.json", models="data/models") -> tuple[int, list[str]]:
    """(bundles checked, problems)."""
    locked = _locked_bundles(Path(lock_path))
    listed, skipped = _listed_bundles(Path(manifest_path))
    on_disk = {p.as_posix() for p in Path(models).rglob(BUNDLE_NAME)} if Path(models).is_dir() else set()
    problems = []
    paths = sorted(set(locked) | set(listed) | skipped | on_disk)
    for path in paths:
        file = Path(path)
        if not file.is_file():
            problems.append(f"missing: {path} (listed in {'dvc.lock' if path in locked else 'the manifest'})")
            continue
        if path not in locked:
            problems.append(f"extra: {path} is not an output in {lock_path}")
        elif file_digest(file, "md5") != locked[path]["md5"]:
            problems.append(
                f"changed: {path} has md5 {file_digest(file, 'md5')}, {lock_path} says {locked[path]['md5']}"
            )
        if path in listed:
            job = listed[path]
            digest = file_digest(file, "sha256")
            if digest != job["sha256"] or file.stat().st_size != job["bytes"]:
                problems.append(
                    f"changed: {path} has sha256 {digest} ({file.stat().st_size} bytes), the manifest says "
                    f"{job['sha256']} ({job['bytes']} bytes)"
                )
        elif path not in skipped:
            problems.append(f"extra: {path} is not in {manifest_path}")
    return len(paths), problems


def remotes(root: Path = Path(".")) -> list[str]:
    """The DVC remotes configured for this project (``.dvc/config`` and ``.dvc/config.local``)."""
    names = []
    for name in ("config", "config.local"):
        path = root / ".dvc" / name
        if path.is_file():
            names += re.findall(r'^\[\s*[\'"]?remote\s+"([^"]+)"', path.read_text(encoding="utf-8"), flags=re.M)
    return list(dict.fromkeys(names))


def what_to_run(all_missing: bool, names: list[str]) -> str:
    """One sentence: what makes the missing bundles appear."""
    where = "no bundle is here yet (a fresh clone?)" if all_missing else "some bundles are not here"
    if names:
        return (f"{where}: run `dvc pull` to fetch them from the DVC remote {', '.join(names)}, or `make study` to "
                "pull what it holds and compute the rest")
    return (f"{where}: run `make study` to compute them (no DVC remote is configured; docs/dvc.md shows how to add "
            "one that holds them, then `dvc pull`)")


def cli(args) -> None:
    """``ptychostudy verify``: print each problem and a count; exit 1 on any."""
    checked, problems = verify(args.lock, args.manifest, args.models)
    for line in problems:
        print(line)
    print(f"verify: {checked} bundles, {len(problems)} problem{'s' if len(problems) != 1 else ''}")
    missing = sum(line.startswith("missing:") for line in problems)
    if missing:
        print("verify: " + what_to_run(missing == checked, remotes()))
    if problems:
        raise CheckFailed


def build_parser(prog: str = "python -m ptychostudy.verify") -> argparse.ArgumentParser:
    p = stage.parser(prog, help="check every bundle against dvc.lock (md5) and the training manifest (SHA256)",
                       description="Recompute the md5 and SHA256 of every wts.h5.zip and compare them with dvc.lock and "
                       "training_manifest.json; list each bundle that is missing, changed, or unknown to either "
                       "(extra). Exit code 1 on any mismatch, 0 when all agree.")
    p.add_argument("--lock", type=Path, default=Path("dvc.lock"), help="default: dvc.lock")
    p.add_argument("--manifest", type=Path, default=Path("reports/training_manifest.json"),
                   help="default: reports/training_manifest.json")
    p.add_argument("--models", type=Path, default=Path("data/models"), help="artefact folder (default: data/models)")
    return p


def main(argv: list[str] | None = None, prog: str = "python -m ptychostudy.verify") -> int:
    return stage.main(cli, build_parser(prog), argv, timed=False)


if __name__ == "__main__":
    sys.exit(main())
