"""``ptychostudy verify``: every bundle against ``dvc.lock`` (md5) and the training manifest (SHA256).

Lists each problem as one line — a bundle missing from disk, a bundle whose bytes changed, a
bundle on disk that neither ``dvc.lock`` nor the manifest knows — and returns them; the command
exits 1 when there is any.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from ptychostudy import CheckFailed, StudyError, stage
from ptychostudy.io import file_digest
from ptychostudy.layout import BUNDLE as BUNDLE_NAME
from ptychostudy.layout import bundle_path


def _locked_bundles(lock_path: Path) -> dict[str, dict]:
    if not lock_path.is_file():
        raise StudyError(f"{lock_path}: no such file; run `dvc repro` first")
    try:
        lock = yaml.safe_load(lock_path.read_text(encoding="utf-8"))
        stages = lock["stages"]
        return {
            out["path"]: out
            for stage in stages.values()
            for out in stage.get("outs", [])
            if str(out["path"]).endswith(BUNDLE_NAME)
        }
    except (yaml.YAMLError, KeyError, TypeError, AttributeError) as exc:
        raise StudyError(f"{lock_path}: not a readable dvc.lock ({exc})") from None


def _listed_bundles(manifest_path: Path) -> tuple[dict[str, dict], set[str]]:
    """(path -> job) for trained jobs, and the paths of skipped jobs' bundles."""
    if not manifest_path.is_file():
        raise StudyError(f"{manifest_path}: no such file; run `dvc repro` (the summarize stage) first")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        root = manifest["artifact_dir"]
        jobs = {f"{root}/{job['bundle']}": job for job in manifest["jobs"]}
        skipped = {bundle_path(root, s["dose"], s["view"]).as_posix() for s in manifest["skipped"]}
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise StudyError(f"{manifest_path}: not a readable training manifest ({exc})") from None
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


def cli(args) -> None:
    """``ptychostudy verify``: print each problem and a count; exit 1 on any."""
    checked, problems = verify(args.lock, args.manifest, args.models)
    for line in problems:
        print(line)
    print(f"verify: {checked} bundles, {len(problems)} problem{'s' if len(problems) != 1 else ''}")
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
