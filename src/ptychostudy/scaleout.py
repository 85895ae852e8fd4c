"""Scale-out: the pipeline's stale stages run in parallel through Parsl, with DVC as the only ledger.

``ptychostudy run [--jobs N] [--executor local|slurm|pbs] [--config FILE]`` (or ``python -m
ptychostudy.scaleout ...``) does what ``dvc repro`` does, several stages at a time:

* DVC says what the pipeline is: the stages, their graph and the order ``dvc repro`` would take
  (``dvc.repo.reproduce.plan_repro``).
* A stage is looked at once every stage it depends on has finished, and runs only if DVC calls it
  changed (``Stage.changed``: its command, params, dependencies or outputs differ from ``dvc.lock``),
  exactly the rule of ``dvc repro``. Its old outputs are removed first, as ``dvc repro`` does.
* Its own command from ``dvc.yaml`` runs as a Parsl bash app, on this machine's cores (default) or as
  SLURM / PBS Pro jobs; stdout and stderr go to one log per stage.
* This process alone records each finished stage (what ``dvc repro`` does after a stage's command: the
  stage's ``save``, ``commit`` and its dvc.lock entry, with DVC's own calls), after checking that
  none of its dependencies changed while it ran, and in the order ``dvc repro`` would have written
  them, so that a run from scratch leaves the same ``dvc.lock`` byte for byte. The dvc.lock entries
  are written several at a time (``record_seconds``; always when the run ends, fails or is
  interrupted): DVC rewrites the whole file for every write, about 7 s of the driver's time per stage
  on the study's 230 stages, during which no stage could start. A stage that failed is never
  recorded; the stages that need it are skipped, every other stage finishes and is recorded, and the
  next run does only what is missing. A driver killed midway leaves recorded only stages whose
  outputs were complete (a kill -9 loses at most ``record_seconds`` of records: those stages rerun).
* A run of the whole pipeline also drops dvc.lock entries of stages dvc.yaml no longer defines (a
  renamed or removed stage; ``dvc repro`` keeps them).

Each stage asks for the torch threads its params give it (``<section>.threads``: fixed, because the
results depend on them); the driver starts a stage only when that many of its cores are free. A stage
it starts on cores it holds keeps libgomp's default wait policy (spin, then sleep: fastest when the
cores are its own); a stage started beside work the driver does not know of (``--passive``) waits
passively, so that its threads hand a busy core back. The wait policy changes speed only, never results.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from ptychostudy import StudyError
from ptychostudy.io import file_digest, write_bytes
from ptychostudy.params import ParamsError as ConfigError
from ptychostudy.params import listing
from ptychostudy.params import scalar as _check_scalar

EXECUTORS = ("local", "slurm", "pbs")
DEFAULT_CONFIG = Path("profiles/scaleout.yaml")
LOG_DIR = Path(".dvc/tmp/scaleout")
TRAINING_STAGES = ("train", "replicate")  # the stage groups that train networks (GPU jobs when configured)

CLUSTER_KEYS = {  # key -> (type, default, smallest value allowed); the same keys for SLURM and PBS Pro
    "queue": (str, None, None),  # SLURM partition / PBS queue (None: the scheduler's default)
    "account": (str, None, None),
    "walltime": (str, "01:00:00", None),
    "cores_per_node": (int, None, 1),  # None: this machine's core count
    "max_blocks": (int, 1, 1),  # at most this many jobs (blocks) at once, each one node
    "worker_init": (str, "", None),  # shell lines run before the worker starts (module load, venv)
    "scheduler_options": (str, "", None),  # extra #SBATCH / #PBS lines
    "training_gpus": (int, 0, 0),  # GPUs per job for the training stages (train, replicate); 0: CPU jobs
}
TOP_KEYS = {"executor": (str, "local", None), "cores": (int, None, 1), "jobs": (int, None, 1),
            "poll_seconds": (float, 0.5, 0.01), "record_seconds": (float, 300.0, 0.0)}


@dataclass(frozen=True)
class ScaleoutConfig:
    executor: str = "local"
    cores: int | None = None  # local: cores the stages may use (None: all of this machine's)
    jobs: int | None = None  # at most this many stages at once (None: as many as the cores allow)
    poll_seconds: float = 0.5
    record_seconds: float = 300.0  # finished stages' dvc.lock entries are written together at most this often
    slurm: dict = field(default_factory=dict)
    pbs: dict = field(default_factory=dict)

    @property
    def cluster(self) -> dict:
        return self.slurm if self.executor == "slurm" else self.pbs

    def core_budget(self) -> int:
        if self.executor == "local":
            return self.cores or os.cpu_count() or 1
        per_node = self.cluster["cores_per_node"] or os.cpu_count() or 1
        return per_node * self.cluster["max_blocks"]


def _typed(value: Any, tp: type, smallest, key: str):
    """``value`` checked as params.yaml's scalars are (``config._check_scalar``), and against ``smallest``."""
    if value is None:
        return None
    try:
        value = _check_scalar(value, tp, key)
    except ConfigError as exc:
        raise StudyError(f"scale-out config: {exc}") from None
    if smallest is not None and value < smallest:
        raise StudyError(f"scale-out config: {key} must be at least {smallest}, not {value}")
    return value


def _section(raw: Any, keys: dict, where: str) -> dict:
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise StudyError(f"scale-out config: {where} must be a mapping")
    unknown = sorted(set(map(str, raw)) - set(keys))
    if unknown:
        raise StudyError(f"scale-out config: unknown key {where + '.' if where else ''}{unknown[0]}; allowed: {', '.join(keys)}")
    return {key: _typed(raw.get(key, default), tp, smallest, f"{where + '.' if where else ''}{key}")
            for key, (tp, default, smallest) in keys.items()}


def load_config(path: Path | None, *, executor: str | None = None, jobs: int | None = None) -> ScaleoutConfig:
    """The validated scale-out config (``profiles/scaleout.yaml`` by default; every key optional),
    with the command line's ``--executor`` and ``--jobs`` over it."""
    raw: Any = {}
    if path is not None:
        if not Path(path).is_file():
            raise StudyError(f"scale-out config {path} not found")
        try:
            raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except UnicodeDecodeError:
            raise StudyError(f"scale-out config {path} is not UTF-8 text") from None
        except yaml.YAMLError as exc:
            raise StudyError(f"scale-out config {path} is not valid YAML ({_one_line(exc, 120)})") from None
        if not isinstance(raw, dict):
            raise StudyError(f"scale-out config {path} must be a mapping")
        try:
            return _config(raw, executor, jobs)
        except StudyError as exc:
            raise StudyError(str(exc).replace("scale-out config:", f"scale-out config {path}:", 1)) from None
    return _config(raw, executor, jobs)


def _config(raw: dict, executor: str | None, jobs: int | None) -> ScaleoutConfig:
    top = _section({k: v for k, v in raw.items() if k not in ("slurm", "pbs")}, TOP_KEYS, "")
    if executor is not None:
        top["executor"] = executor
    if jobs is not None:
        top["jobs"] = _typed(jobs, int, 1, "--jobs")
    if top["executor"] not in EXECUTORS:
        raise StudyError(f"scale-out config: executor must be one of {', '.join(EXECUTORS)}, not {top['executor']!r}")
    return ScaleoutConfig(**top, slurm=_section(raw.get("slurm"), CLUSTER_KEYS, "slurm"),
                          pbs=_section(raw.get("pbs"), CLUSTER_KEYS, "pbs"))


# --- the pipeline, as DVC sees it -------------------------------------------------------------------

def stage_threads(stage, params: dict) -> int:
    """The cores a stage asks for: the largest ``threads`` among the params keys it declares (1 if none)."""
    from dvc.dependency.param import ParamsDependency

    found = [1]
    for dep in stage.deps:
        if not isinstance(dep, ParamsDependency):
            continue
        for key in dep.params or []:
            value: Any = params
            for part in key.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            if key.split(".")[-1] == "threads" and isinstance(value, int):
                found.append(value)
            elif isinstance(value, dict) and isinstance(value.get("threads"), int):
                found.append(value["threads"])
    return max(found)


def _remove_unfinished_writes(stage, root: Path) -> None:
    """A killed run leaves its atomic writes' temporary siblings (``io.atomic_path``: ``.<name>.tmp-<pid>``)
    beside the outputs it was writing; DVC does not know them, but a later stage that depends on the folder
    (summarize reads reports/train) would hash them. They are removed with the stage's old outputs."""
    for out in stage.outs:
        path = root / str(out.def_path)
        for leftover in path.parent.glob(f".{path.name}.tmp-*"):
            leftover.unlink(missing_ok=True)


def _fingerprint(stage, root: Path) -> tuple:
    """(path, md5) of every file a stage depends on: taken before it runs and after, to see that
    nothing it read changed underneath it (contents, not times: recording an upstream stage
    relinks its outputs from DVC's cache)."""
    rows = []
    for dep in stage.deps:
        path = root / str(dep.def_path)
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for p in files:
            rows.append((str(p), file_digest(p, "md5") if p.is_file() else None))
    return tuple(rows)


@dataclass
class Job:
    stage: Any
    name: str
    threads: int
    upstream: set
    state: str = "waiting"  # waiting | running | finished | recorded | unchanged | failed | skipped
    log: Path | None = None
    started: float = 0.0
    seconds: float = 0.0
    fingerprint: tuple = ()
    reason: str = ""  # why it failed or was skipped
    stale: bool | None = None  # DVC's verdict, asked once (None: not asked yet)


def plan(root: Path, targets: list[str], single_item: bool = False):
    """The stages ``dvc repro [-s] [targets]`` would evaluate, in its order, with their upstream stages
    (``single_item``: the targets alone, as ``dvc repro -s``)."""
    from dvc.repo import Repo
    from dvc.repo.reproduce import get_active_graph, plan_repro

    from dvc.exceptions import DvcException

    repo = Repo(str(root))
    try:
        graph = get_active_graph(repo.index.graph)
        chosen = [s for target in (targets or ["dvc.yaml"]) for s in _collect(repo, target)]
    except DvcException as exc:
        raise StudyError(f"dvc.yaml cannot be read as a pipeline ({_one_line(exc)})") from None
    order = plan_repro(graph, chosen)
    if single_item:
        chosen_set = set(chosen)
        order = [s for s in order if s in chosen_set]
    params_file = root / "params.yaml"
    params = yaml.safe_load(params_file.read_text(encoding="utf-8")) if params_file.is_file() else {}
    names = {s: s.addressing for s in order}
    jobs = [Job(s, names[s], stage_threads(s, params or {}), {names[u] for u in graph.successors(s) if u in names})
            for s in order]
    return repo, jobs


def _one_line(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit] + "…"


def _collect(repo, target: str) -> list:
    """The stages of one target (a stage name, a foreach/matrix group, dvc.yaml), or one sentence naming it."""
    from dvc.exceptions import DvcException
    from dvc.repo.reproduce import collect_stages

    try:
        return collect_stages(repo, [target])
    except DvcException:
        names = listing(sorted({s.addressing.split("@")[0] for s in repo.index.stages}))
        raise StudyError(f"{target[:60]!r} is no stage or output of dvc.yaml; stages: {names} (@<item> for one item; "
                         "`dvc stage list` lists all)") from None


class _WorkspaceLock:
    """One `ptychostudy run` per workspace: a second is refused with a sentence naming the first's process."""

    def __init__(self, root: Path):
        self.path = root / ".dvc" / "tmp" / "ptychostudy-run.lock"

    def __enter__(self):
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(self.path, "a+")
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.fh.seek(0)
            holder = self.fh.read().strip() or "unknown"
            self.fh.close()
            raise StudyError(f"another `ptychostudy run` (process {holder}) is working in this workspace; wait for it "
                             "to finish or stop it, then run again") from None
        self.fh.seek(0)
        self.fh.truncate()
        self.fh.write(str(os.getpid()))
        self.fh.flush()
        return self

    def __exit__(self, *exc):
        self.fh.close()  # closing releases the lock; the file stays (it names no one once unlocked)
        return False


# --- Parsl ------------------------------------------------------------------------------------------

def _worker_init(root: Path, extra: str) -> str:
    venv_bin = Path(sys.executable).parent
    return "\n".join(line for line in (f"cd {root}", f"export PATH={venv_bin}:$PATH", "export DVC_NO_ANALYTICS=1", extra) if line)


def parsl_config(cfg: ScaleoutConfig, root: Path, run_dir: Path):
    """The Parsl configuration: threads waiting on local processes, or HighThroughput workers in
    SLURM / PBS Pro jobs (one executor for CPU stages, one more with GPUs for training if asked)."""
    from parsl.config import Config

    if cfg.executor == "local":
        from parsl.executors.threads import ThreadPoolExecutor

        slots = cfg.jobs or cfg.core_budget()
        return Config(executors=[ThreadPoolExecutor(label="cpu", max_threads=slots)], run_dir=str(run_dir),
                      initialize_logging=False, strategy="none")
    from parsl.executors import HighThroughputExecutor
    from parsl.launchers import SingleNodeLauncher

    c = cfg.cluster
    cores = c["cores_per_node"] or os.cpu_count() or 1

    def provider(gpus: int):
        options = c["scheduler_options"]
        if cfg.executor == "slurm":
            from parsl.providers import SlurmProvider

            if gpus:
                options = f"{options}\n#SBATCH --gres=gpu:{gpus}".strip()
            return SlurmProvider(partition=c["queue"] or "", account=c["account"], walltime=c["walltime"],
                                 cores_per_node=cores, nodes_per_block=1, init_blocks=0, min_blocks=0,
                                 max_blocks=c["max_blocks"], scheduler_options=options,
                                 worker_init=_worker_init(root, c["worker_init"]), launcher=SingleNodeLauncher(),
                                 exclusive=False)
        from parsl.providers import PBSProProvider

        return PBSProProvider(queue=c["queue"], account=c["account"], walltime=c["walltime"], cpus_per_node=cores,
                              select_options=f"ngpus={gpus}" if gpus else "", nodes_per_block=1,
                              init_blocks=0, min_blocks=0, max_blocks=c["max_blocks"], scheduler_options=options,
                              worker_init=_worker_init(root, c["worker_init"]), launcher=SingleNodeLauncher())

    executors = [HighThroughputExecutor(label="cpu", cores_per_worker=1, max_workers_per_node=cores,
                                        provider=provider(0))]
    if c["training_gpus"]:
        executors.append(HighThroughputExecutor(label="gpu", max_workers_per_node=1, provider=provider(c["training_gpus"])))
    return Config(executors=executors, run_dir=str(run_dir), initialize_logging=False)


def stage_command(command: str, root: str, passive: bool = False, stdout=None, stderr=None) -> str:
    """A stage's own command from dvc.yaml, run in the project's root (a Parsl bash app's body); ``passive``:
    its OpenMP threads wait passively (the machine is shared with work this driver does not schedule).
    Pass ``passive`` by name: a Parsl app also passes every defaulted parameter by name."""
    return f"cd {root} && " + ("export OMP_WAIT_POLICY=PASSIVE && " if passive else "") + command


def _stage_apps() -> dict:
    """The bash app of each executor label ("cpu", and "gpu" for training when configured)."""
    from parsl import bash_app

    return {label: bash_app(stage_command, executors=[label]) for label in ("cpu", "gpu")}


# --- the driver -------------------------------------------------------------------------------------

def _say(message: str) -> None:
    print(message, flush=True)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").replace("\r", "\n")
    except OSError:
        return ""
    return "\n".join(f"    {line}" for line in [ln for ln in text.splitlines() if ln.strip()][-lines:])


def _changed(repo, job: Job) -> bool:
    """DVC's verdict on one stage (command, params, dependencies, outputs against dvc.lock), asked once."""
    if job.stale is None:  # remembered while the stage waits for free cores
        with repo.lock:
            job.stale = bool(job.stage.changed())
    return job.stale


def _record(repo, job: Job) -> None:
    """Record a finished stage's outputs as ``dvc repro`` does once it has run the stage's command
    (``Stage.run``'s save and commit), here in the driver with the stage object DVC gave the plan: no second
    interpreter and no second reading of dvc.yaml per stage (a ``dvc commit`` subprocess cost about 3 s of
    CPU per stage on this study, taken from the stages running beside it). Its dvc.lock entry: ``_write_lock``."""
    stage = job.stage
    no_cache_outs = any(not out.use_cache for out in stage.outs if not (out.is_metric or out.is_plot))
    try:
        with repo.lock:
            stage.save(run_cache=not no_cache_outs)
            stage.commit()
    except Exception as exc:  # DVC's own errors (a missing output, a cache it cannot write)
        raise StudyError(f"recording {job.name} in dvc.lock failed: {exc}") from exc


def _write_lock(repo, recorded: list[Job], prune: set[str] | None = None) -> None:
    """The dvc.lock entries of ``recorded`` (in dvc repro's order) in one write, each as ``Stage.dump`` writes it
    (DVC's ``to_lockfile`` and its YAML round trip); ``prune``: also drop the entries of stages not in this set
    (the pipeline's). Atomic: a new file replaces the old one, so that a driver killed while writing leaves the
    old dvc.lock whole (DVC writes in place)."""
    from dvc.stage.serialize import to_lockfile
    from dvc.utils.serialize import parse_yaml_for_update
    from dvc.utils.serialize._yaml import dumps_yaml

    path = Path(repo.root_dir) / "dvc.lock"
    try:
        with repo.lock:
            data = parse_yaml_for_update(path.read_text(encoding="utf-8"), str(path)) if path.is_file() else {}
            if not data:
                data.update({"schema": "2.0"})  # first, as DVC writes it
            data["stages"] = data.get("stages", {})
            for j in recorded:
                data["stages"].update(to_lockfile(j.stage))
            dropped = [k for k in data["stages"] if k not in prune] if prune is not None else []
            for k in dropped:
                del data["stages"][k]
            if not recorded and not dropped:
                return
            write_bytes(path, dumps_yaml(data).encode("utf-8"))
    except Exception as exc:  # DVC's own errors (a lock file it cannot read or write)
        names = ", ".join(j.name for j in recorded[:3]) + (" …" if len(recorded) > 3 else "")
        raise StudyError(f"writing dvc.lock ({names or 'dropping old entries'}) failed: {exc}") from exc
    if dropped:
        _say(f"  dvc.lock: dropped {len(dropped)} entries of stages dvc.yaml no longer defines "
             f"({', '.join(dropped[:3])}{' …' if len(dropped) > 3 else ''})")


def run(root: Path, cfg: ScaleoutConfig, targets: list[str] | None = None, *, force: bool = False,
        single_item: bool = False, dry: bool = False, passive: bool = False) -> int:
    """Run the stale stages of the pipeline at ``root``; 0 when every stage is recorded or up to date."""
    root = root.resolve()
    if not (root / "dvc.yaml").is_file():
        raise StudyError(f"{root}: no dvc.yaml here; run from the project's root")
    from dvc.lock import LockError

    try:
        if dry:
            return _dry(root, targets, single_item, force)
        with _WorkspaceLock(root):
            return _run(root, cfg, targets, force=force, single_item=single_item, passive=passive)
    except LockError:
        raise StudyError("DVC's lock on this workspace is held: a `dvc repro` or another DVC command is running "
                         "here; wait for it to finish, then run again") from None


def _dry(root: Path, targets, single_item: bool, force: bool) -> int:
    """``--dry``: the stages that would run now (DVC calls them changed, or -f), then how many wait on them."""
    repo, jobs = plan(root, targets or [], single_item)
    stale = [j for j in jobs if force or _changed(repo, j)]
    names = {j.name for j in stale}
    after = [j for j in jobs if j.name not in names and j.upstream & names]
    for j in stale:
        upstream = sorted(j.upstream & names)
        shown = ", ".join(upstream[:4]) + (f" and {len(upstream) - 4} more" if len(upstream) > 4 else "")
        _say(f"{j.name}  threads {j.threads}  after {shown or '-'}")
    _say(f"ptychostudy run --dry: {len(stale)} of {len(jobs)} stages would run; {len(after)} more read their outputs "
         "and run only if those change")
    return 0


def _run(root: Path, cfg: ScaleoutConfig, targets, *, force: bool, single_item: bool, passive: bool) -> int:
    repo, jobs = plan(root, targets or [], single_item)
    by_name = {j.name: j for j in jobs}
    budget = cfg.core_budget()
    slots = cfg.jobs or budget
    import parsl

    run_dir = root / LOG_DIR
    logs = run_dir / time.strftime("%Y%m%d-%H%M%S")
    logs.mkdir(parents=True, exist_ok=True)
    parsl.load(parsl_config(cfg, root, run_dir / "parsl"))
    apps = _stage_apps()
    gpu = cfg.executor != "local" and cfg.cluster["training_gpus"] > 0
    # local stages get the cores they ask for to themselves, unless the config gives more cores than there are
    _say(f"ptychostudy scale-out: {len(jobs)} stages, executor {cfg.executor}, {budget} cores, "
         f"at most {slots} stages at once; logs in {logs.relative_to(root)}")
    running: dict[concurrent.futures.Future, Job] = {}
    start = time.perf_counter()
    next_to_record = 0
    unwritten: list[Job] = []  # recorded, their dvc.lock entries not yet written
    written_at = start
    whole = not targets
    try:
        while True:
            # look at every stage whose upstream has finished (its outputs are on disk), in dvc repro's order
            for j in jobs:
                if j.state != "waiting":
                    continue
                ups = [by_name[u] for u in j.upstream]
                if any(u.state in ("failed", "skipped") for u in ups):
                    j.state, j.reason = "skipped", "needs " + ", ".join(u.name for u in ups if u.state in ("failed", "skipped"))
                    continue
                if not all(u.state in ("finished", "recorded", "unchanged") for u in ups):
                    continue
                if j.state == "waiting" and not force and not _changed(repo, j):
                    j.state = "unchanged"
                    continue
                used = sum(r.threads for r in running.values())
                if running and (len(running) >= slots or used + min(j.threads, budget) > budget):
                    continue
                with repo.lock:
                    j.stage.remove_outs(ignore_remove=False, force=False)
                _remove_unfinished_writes(j.stage, root)
                j.fingerprint = _fingerprint(j.stage, root)
                j.log = logs / f"{j.name.replace('@', '_')}.log"
                app = apps["gpu" if gpu and j.name.split("@")[0] in TRAINING_STAGES else "cpu"]
                j.state, j.started = "running", time.perf_counter()
                running[app(j.stage.cmd, str(root), passive=passive, stdout=str(j.log), stderr=str(j.log))] = j
                _say(f"  start  {j.name}  ({j.threads} thread{'s' if j.threads > 1 else ''})")
            # record finished stages in dvc repro's order; one writer: this process
            while next_to_record < len(jobs) and jobs[next_to_record].state in ("finished", "unchanged", "failed", "skipped"):
                j = jobs[next_to_record]
                if j.state == "finished":
                    if _fingerprint(j.stage, root) != j.fingerprint:
                        j.state, j.reason = "failed", "its dependencies changed while it ran; not recorded"
                        _say(f"  FAILED {j.name}: {j.reason}")
                    else:
                        _record(repo, j)
                        j.state = "recorded"
                        unwritten.append(j)
                next_to_record += 1
            if unwritten and running and time.perf_counter() - written_at >= cfg.record_seconds:
                _write_lock(repo, unwritten)
                unwritten, written_at = [], time.perf_counter()
            if not running:  # nothing left that could start: every stage is settled and recorded
                break
            done, _ = concurrent.futures.wait(list(running), timeout=cfg.poll_seconds,
                                              return_when=concurrent.futures.FIRST_COMPLETED)
            for future in done:
                j = running.pop(future)
                j.seconds = time.perf_counter() - j.started
                try:
                    future.result()
                    missing = [str(o) for o in j.stage.outs if not (root / str(o.def_path)).exists()]
                    if missing:
                        j.state, j.reason = "failed", f"finished without {', '.join(missing)}"
                    else:
                        j.state = "finished"
                except Exception as exc:  # a non-zero exit status of the stage's command
                    j.state, j.reason = "failed", str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                if j.state == "finished":
                    _say(f"  done   {j.name}  {j.seconds:.0f} s")
                else:
                    _say(f"  FAILED {j.name}  {j.seconds:.0f} s: {j.reason}; log: {j.log}\n{_tail(j.log)}")
    finally:
        for future in running:
            try:
                future.cancel()
            except NotImplementedError:  # a running Parsl app cannot be cancelled: cleanup below stops its workers
                pass
        parsl.dfk().cleanup()
        parsl.clear()
        # the entries of every stage recorded so far, also when a stage failed or the run was interrupted
        settled = next_to_record == len(jobs)
        if unwritten or (whole and settled):
            _write_lock(repo, unwritten, prune={j.name for j in jobs} if whole and settled else None)
    counts = {s: sum(j.state == s for j in jobs) for s in ("recorded", "unchanged", "failed", "skipped")}
    _say(f"ptychostudy scale-out: {counts['recorded']} ran and recorded in dvc.lock, {counts['unchanged']} up to date, "
         f"{counts['failed']} failed, {counts['skipped']} skipped, {time.perf_counter() - start:.0f} s")
    for j in jobs:
        if j.state in ("failed", "skipped"):
            _say(f"  {j.state}: {j.name}: {j.reason}" + (f" (log: {j.log})" if j.state == "failed" and j.log else ""))
    return 0 if counts["failed"] == counts["skipped"] == 0 else 1


def build_parser(prog: str = "python -m ptychostudy.scaleout") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0],
                                epilog="Plain `dvc repro` keeps working; this only runs the same stages several at a "
                                "time. Never run it and `dvc repro` in one workspace at once.")
    p.add_argument("targets", nargs="*", help="stages or groups to bring up to date (default: the whole pipeline)")
    p.add_argument("--jobs", type=int, help="at most this many stages at once (default: as many as the cores allow)")
    p.add_argument("--executor", choices=EXECUTORS, help="where stages run (default: the config's, else local)")
    p.add_argument("--config", type=Path, help=f"scale-out config (default: {DEFAULT_CONFIG} when present)")
    p.add_argument("-f", "--force", action="store_true", help="run every planned stage even if DVC calls it up to date")
    p.add_argument("-s", "--single-item", action="store_true",
                   help="the targets alone, not the stages they depend on (as dvc repro -s)")
    p.add_argument("--dry", action="store_true", help="list the planned stages, their threads and upstream stages")
    p.add_argument("--record-seconds", type=float, metavar="S",
                   help="write finished stages' dvc.lock entries together at most every S seconds (default: the "
                   "config's record_seconds, 300; 0: after every stage; always when the run ends)")
    p.add_argument("--passive", action="store_true", help="stages' OpenMP threads wait passively: for a machine shared "
                   "with other heavy work (speed only; results never depend on it)")
    return p


def _drive(argv: list[str] | None, prog: str) -> int:
    """Parse the driver's arguments and run it: 0 all done, 1 a stage failed; StudyError on bad input."""
    args = build_parser(prog).parse_args(argv)
    config = args.config if args.config is not None else (DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None)
    cfg = load_config(config, executor=args.executor, jobs=args.jobs)
    if args.record_seconds is not None:  # checked as the config file's key is
        cfg = replace(cfg, record_seconds=_typed(args.record_seconds, float, TOP_KEYS["record_seconds"][2],
                                                 "--record-seconds"))
    return run(Path.cwd(), cfg, args.targets, force=args.force, single_item=args.single_item, dry=args.dry, passive=args.passive)


def main(argv: list[str] | None = None, prog: str = "python -m ptychostudy.scaleout") -> int:
    try:
        return _drive(argv, prog)
    except StudyError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
