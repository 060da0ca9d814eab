"""Sweeps: one ``wmlab fit`` per (method, env, seed) of a grid, grouped under one MLflow run.

``wmlab fit --method tdmpc,dreamer --env cartpole-swingup,walker-walk --seeds 1,2,3 --jobs 2``
checks every cell of the grid (methods, envs, presets, files and overrides compose; no seed is
given twice) before any run starts, then runs each cell as a ``wmlab fit`` subprocess, ``jobs``
at a time. The sweep is an MLflow run of its own (the *parent*, tag ``wmlab.kind=sweep``, named
after the sweep); every cell's run is nested under it (``tracking.parent``, tag
``mlflow.parentRunId``), so the MLflow UI shows them grouped, and carries the sweep's name
(tag ``wmlab.sweep``, which ``wmlab compare --sweep NAME`` selects on).

The default name is made from the grid and a digest of the rest of the command (presets,
files, overrides), so running the same command again finds the same sweep: its finished runs
are skipped, runs that stopped (Ctrl-C, a crash, ``kill -9``) resume from their last
checkpoint (``wmlab fit --resume``), and cells without a run, or whose run stopped before
its first checkpoint, start anew. ``wmlab fit --resume SWEEPNAME`` does the same from the
name alone. Each run writes its output to ``<checkpoint.dir>/<sweep run id>/logs/``, also
logged as artifacts of the sweep's run; the sweep prints one line per run start and finish.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from wmlab.errors import ConfigError

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

#: tag holding the sweep's grid and command (JSON) on the sweep's run
SPEC_TAG = "wmlab.sweep_spec"
POLL_S = 0.5


@dataclass(frozen=True)
class Cell:
    """One run of the grid."""

    method: str
    env: str
    seed: int

    def __str__(self) -> str:
        return f"{self.method} on {self.env}, seed {self.seed}"

    @property
    def slug(self) -> str:
        from wmlab.tracking.store import safe_name

        return safe_name(f"{self.method}-{self.env}-s{self.seed}")


@dataclass
class Spec:
    """What a sweep runs: the grid and what every run of it gets (presets, files, overrides)."""

    methods: list[str]
    envs: list[str]
    seeds: list[int]
    presets: list[str] = field(default_factory=list)
    configs: list[str] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)

    def cells(self) -> list[Cell]:
        return [Cell(m, e, s) for m, e, s in itertools.product(self.methods, self.envs, self.seeds)]

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Spec":
        return cls(**json.loads(text))

    def default_name(self) -> str:
        """``sweep-<methods>-<envs>-s<seeds>-<6 hex digits of everything>``: the same command
        gives the same name (so running it again resumes the sweep), another one another."""
        digest = hashlib.sha256(self.to_json().encode()).hexdigest()[:6]
        grid = f"{'_'.join(self.methods)}-{'_'.join(self.envs)}-s{'_'.join(map(str, self.seeds))}"
        if len(grid) > 80:
            grid = grid[:77] + "..."
        return f"sweep-{grid}-{digest}"


# --- parsing and checking the command ----------------------------------------------------------


def split_list(text: Optional[str], what: str, *, unique: bool = True) -> list[str]:
    """``"a,b"`` -> ``["a", "b"]``; an empty item or one given twice is a :class:`ConfigError`."""
    items = [x.strip() for x in (text or "").split(",")]
    if not text or any(not x for x in items):
        raise ConfigError(f"{what} must be a comma-separated list without empty items, got {text!r}")
    twice = sorted({x for x in items if items.count(x) > 1})
    if twice and unique:
        raise ConfigError(f"{what} {', '.join(twice)} given twice in {text!r}")
    return items


def parse_seeds(text: str) -> list[int]:
    seeds = split_list(text, "--seeds", unique=False)
    try:
        values = [int(s) for s in seeds]
    except ValueError:
        raise ConfigError(f"--seeds takes integers separated by commas, e.g. 1,2,3; got {text!r}") from None
    twice = sorted({v for v in values if values.count(v) > 1})
    if twice:
        raise ConfigError(f"seed {', '.join(map(str, twice))} given twice in --seeds {text}")
    return values


def is_sweep(args) -> bool:
    """Whether a ``wmlab fit`` command line asks for a sweep."""
    return bool(args.seeds is not None or args.jobs is not None or args.sweep is not None
                or "," in (args.method or "") or "," in (args.env or ""))


def spec_from_args(args) -> Spec:
    """The sweep ``args`` ask for; :class:`ConfigError` for input that names no grid."""
    if not args.method or not args.env:
        raise ConfigError("a sweep needs --method and --env (comma-separated lists allowed)")
    for item in args.overrides:
        key = item.partition("=")[0].strip()
        if key == "run.seed":
            raise ConfigError(f"seeds given twice: --seeds and {item}; give them with --seeds only")
        if key == "run.name":
            raise ConfigError(f"a sweep names its runs itself; drop {item} (--sweep NAME names the sweep)")
        if key == "tracking.parent":
            raise ConfigError(f"a sweep nests its runs under its own run; drop {item}")
    seeds = parse_seeds(args.seeds) if args.seeds is not None else [1]
    return Spec(methods=split_list(args.method, "--method"), envs=split_list(args.env, "--env"),
                seeds=seeds, presets=list(args.preset), configs=[str(Path(f).resolve()) for f in args.config],
                overrides=list(args.overrides))


def check(spec: Spec):
    """Compose the config of every (method, env) of the grid, as ``wmlab fit`` would; the
    first error is raised before any run starts. Returns one composed config (the store,
    experiment and checkpoint folder every run shares)."""
    from wmlab import plugin_index, registry
    from wmlab.config import compose
    from wmlab.envs import split_family

    pairs = list(itertools.product(spec.methods, spec.envs))
    early = {}
    for method, env in pairs:  # fast: the plugin index, before any plugin is imported
        early[method, env] = plugin_index.check_input(method, env, presets=spec.presets,
                                                      files=spec.configs, overrides=spec.overrides)
    shared, first = None, None
    for method, env in pairs:
        cfg = early[method, env]
        if cfg is None:  # a plugin the index does not know yet: compose with it imported
            cls, _ = registry.load_method(method)
            family, task = split_family(env)
            registry.load_env_family(family)[0].validate(task)
            cfg = compose(method, cls, env, presets=spec.presets, files=spec.configs, overrides=spec.overrides)
        where = (cfg.tracking.uri, cfg.tracking.experiment, cfg.checkpoint.dir)
        if shared is None:
            shared, first = where, cfg
        elif where != shared:
            raise ConfigError(f"the runs of a sweep share one store, experiment and checkpoint folder; "
                              f"{method} on {env} gets {where}, the first run {shared}")
    return first


# --- the sweep's MLflow run ----------------------------------------------------------------------


def _quoted(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def find_parent(client: "MlflowClient", name: str, exp_ids: Optional[list[str]] = None) -> Optional["Run"]:
    """The sweep run named ``name`` (newest first if several), or ``None``."""
    from wmlab.tracking.run import KIND_TAG, SWEEP_TAG

    exp_ids = exp_ids or [e.experiment_id for e in client.search_experiments()]
    if not exp_ids:
        return None
    runs = client.search_runs(exp_ids, f"tags.`{SWEEP_TAG}` = {_quoted(name)} and tags.`{KIND_TAG}` = 'sweep'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0] if runs else None


def _open_parent(client: "MlflowClient", exp_id: str, name: str, spec: Spec, named: bool) -> "Run":
    """The sweep's run: found by name and set RUNNING again, or created."""
    from mlflow.entities import Param

    from wmlab.tracking import store
    from wmlab.tracking.lookup import name_taken
    from wmlab.tracking.run import KIND_TAG, SWEEP_TAG

    run = find_parent(client, name, [exp_id])
    if run is not None:
        saved = Spec.from_json(run.data.tags.get(SPEC_TAG, "{}"))
        if saved != spec:
            raise ConfigError(f"sweep {name!r} exists with another grid or settings; resume it with "
                              f"`wmlab fit --resume {name}` or choose another name with --sweep NAME")
        client.update_run(run.info.run_id, status="RUNNING")
        for key, value in store.owner_tags().items():
            client.set_tag(run.info.run_id, key, value)
        return run
    if name_taken(client, exp_id, name):
        raise ConfigError(f"a run named {name!r} exists and is not a sweep; choose another name with --sweep NAME"
                          if named else f"a run named {name!r} exists and is not a sweep")
    tags = {SWEEP_TAG: name, KIND_TAG: "sweep", SPEC_TAG: spec.to_json(),
            "mlflow.source.name": "wmlab fit (sweep)", "mlflow.source.type": "LOCAL", **store.owner_tags()}
    run = client.create_run(exp_id, run_name=name, tags=tags)
    params = {"sweep.methods": ",".join(spec.methods), "sweep.envs": ",".join(spec.envs),
              "sweep.seeds": ",".join(map(str, spec.seeds)), "sweep.presets": ",".join(spec.presets),
              "sweep.overrides": " ".join(spec.overrides)[:6000], "sweep.runs": len(spec.cells())}
    client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()])
    return run


def child_runs(client: "MlflowClient", parent: "Run") -> dict[Cell, "Run"]:
    """The newest run nested under ``parent`` for each cell it holds a run of."""
    runs = client.search_runs([parent.info.experiment_id],
                              f"tags.mlflow.parentRunId = {_quoted(parent.info.run_id)}",
                              order_by=["attributes.start_time DESC"], max_results=5000)
    found: dict[Cell, Run] = {}
    for run in runs:
        tags = run.data.tags
        if "wmlab.method" not in tags or "wmlab.evaluates" in tags or not tags.get("wmlab.seed", "").lstrip("-").isdigit():
            continue
        found.setdefault(Cell(tags["wmlab.method"], tags["wmlab.env"], int(tags["wmlab.seed"])), run)
    return found


def _resumable(run: "Run") -> bool:
    folder = run.data.tags.get("wmlab.checkpoint_dir")
    return bool(folder) and (Path(folder) / "latest").exists()


# --- running -----------------------------------------------------------------------------------


@dataclass
class _Job:
    cell: Cell
    number: int
    proc: subprocess.Popen
    log: Path
    started: float
    resumed: bool


class Sweep:
    """Runs a :class:`Spec`'s cells as ``wmlab fit`` subprocesses under one MLflow run."""

    def __init__(self, spec: Spec, name: str, cfg, *, jobs: int = 1, named: bool = False, out=None):
        from wmlab.tracking import client_for, experiment_id

        self.spec, self.name, self.jobs, self.out = spec, name, max(1, int(jobs)), out or sys.stderr
        self.client = client_for(cfg.tracking.uri)
        self.uri = self.client.tracking_uri
        exp_id = experiment_id(self.client, cfg.tracking.experiment)
        self.parent = _open_parent(self.client, exp_id, name, spec, named)
        self.parent_id = self.parent.info.run_id
        self.logs = Path(cfg.checkpoint.dir).resolve() / self.parent_id / "logs"
        self.cells = spec.cells()

    def say(self, text: str) -> None:
        print(f"sweep {self.name}: {text}", file=self.out, flush=True)

    def _command(self, cell: Cell, previous: Optional["Run"]) -> tuple[list[str], bool]:
        base = [sys.executable, "-m", "wmlab.cli", "fit"]
        if previous is not None and _resumable(previous):
            return base + ["--resume", previous.info.run_id], True
        cmd = base + ["--method", cell.method, "--env", cell.env]
        for preset in self.spec.presets:
            cmd += ["--preset", preset]
        for path in self.spec.configs:
            cmd += ["--config", path]
        return cmd + [*self.spec.overrides, f"run.seed={cell.seed}", f"tracking.parent={self.parent_id}"], False

    def _env(self) -> dict[str, str]:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "MLFLOW_TRACKING_URI": self.uri}
        if "OMP_NUM_THREADS" not in env:  # N runs at once share the cores instead of each taking all
            env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // min(self.jobs, len(self.cells))))
        env.pop("WMLAB_RUN_ID", None)
        return env

    def _start(self, number: int, cell: Cell, previous: Optional["Run"]) -> _Job:
        cmd, resumed = self._command(cell, previous)
        self.logs.mkdir(parents=True, exist_ok=True)
        log = self.logs / f"{cell.slug}.log"
        with open(log, "ab") as f:
            f.write(f"$ {' '.join(cmd[1:])}\n".encode())
            # a session of its own: Ctrl-C in the terminal reaches the sweep alone, which passes
            # one SIGTERM on to each run (a second signal would stop a run without a checkpoint)
            proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=self._env(), start_new_session=True)
        what = f"resume run {previous.info.run_name}" if resumed else "start"
        self.say(f"[{number}/{len(self.cells)}] {what}: {cell} (log {log})")
        return _Job(cell, number, proc, log, time.monotonic(), resumed)

    def _finished(self, job: _Job) -> bool:
        code = job.proc.returncode
        run = child_runs(self.client, self.parent).get(job.cell)
        took = f"{time.monotonic() - job.started:.0f} s"
        if code == 0 and run is not None and run.info.status == "FINISHED":
            ret = run.data.metrics.get("eval/episode_return")
            score = f", eval return {ret:.1f}" if ret is not None else ""
            self.say(f"[{job.number}/{len(self.cells)}] done: {job.cell}: run {run.info.run_name}{score} ({took})")
            return True
        tail = _last_line(job.log)
        self.say(f"[{job.number}/{len(self.cells)}] FAILED (exit {code}): {job.cell} ({took}): {tail}; "
                 f"log {job.log}")
        return False

    def run(self) -> int:
        """Run what is left of the sweep; 0 if every run finished, else 1."""
        from wmlab.tracking.store import mark_dead_runs_killed

        mark_dead_runs_killed(self.client)
        existing = child_runs(self.client, self.parent)
        todo, done, failed = [], 0, 0
        for number, cell in enumerate(self.cells, 1):
            run = existing.get(cell)
            if run is not None and run.info.status == "FINISHED":
                self.say(f"[{number}/{len(self.cells)}] finished before: {cell} (run {run.info.run_name})")
                done += 1
            elif run is not None and run.info.status == "RUNNING":
                self.say(f"[{number}/{len(self.cells)}] still running in another process: {cell} "
                         f"(run {run.info.run_name}); left alone")
                failed += 1
            else:
                todo.append((number, cell, run))
        self.say(f"{len(self.cells)} runs: {done} finished before, {len(todo)} to run, "
                 f"{self.jobs} at a time; parent run {self.parent_id}")
        running: list[_Job] = []
        previous = signal.signal(signal.SIGTERM, _interrupt) if _main_thread() else None
        try:
            while todo or running:
                while todo and len(running) < self.jobs:
                    running.append(self._start(*todo.pop(0)))
                time.sleep(POLL_S)
                for job in [j for j in running if j.proc.poll() is not None]:
                    running.remove(job)
                    if self._finished(job):
                        done += 1
                    else:
                        failed += 1
        except KeyboardInterrupt:
            self._stop(running)
            self._end("KILLED")
            self.say(f"stopped; {done} of {len(self.cells)} runs finished; continue with: "
                     f"wmlab fit --resume {self.name}")
            raise
        except BaseException:
            self._stop(running)
            self._end("FAILED")
            raise
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        self._end("FINISHED" if failed == 0 else "FAILED")
        if failed:
            self.say(f"{done} of {len(self.cells)} runs finished, {failed} did not; run the same command "
                     f"(or wmlab fit --resume {self.name}) to resume them")
            return 1
        self.say(f"all {len(self.cells)} runs finished; compare them with: wmlab compare --sweep {self.name}")
        return 0

    def _stop(self, running: list[_Job]) -> None:
        """Stop the runs under way as Ctrl-C stops one (a checkpoint first), then wait for them."""
        for job in running:
            if job.proc.poll() is None:
                job.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 120
        for job in running:
            try:
                job.proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                job.proc.kill()
                job.proc.wait()

    def _end(self, status: str) -> None:
        if self.logs.is_dir():
            try:
                self.client.log_artifacts(self.parent_id, str(self.logs), "logs")
            except Exception as e:  # the logs stay on disk; the status matters more
                self.say(f"could not log the runs' logs as artifacts: {e}")
        self.client.set_terminated(self.parent_id, status)


def _last_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    errors = [ln for ln in lines if ln.startswith("wmlab: error:") or "Error" in ln]
    return (errors or lines or ["no output"])[-1].strip()[:300]


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _interrupt(signum, frame):
    raise KeyboardInterrupt


# --- entry points for the CLI ----------------------------------------------------------------------


def check_jobs(jobs: Optional[int]) -> None:
    if jobs is not None and jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {jobs}")


def fit_sweep(args) -> int:
    """``wmlab fit`` with a grid (``--seeds``, comma lists, ``--jobs``, ``--sweep``)."""
    from wmlab import preflight

    check_jobs(args.jobs)
    if args.sweep is not None and not args.sweep.strip():
        raise ConfigError("--sweep takes a name, got ''; leave it out for a name made from the grid")
    spec = spec_from_args(args)
    cfg = check(spec)
    preflight.storage(cfg)
    name = args.sweep or spec.default_name()
    return Sweep(spec, name, cfg, jobs=args.jobs or 1, named=bool(args.sweep)).run()


def resume_sweep(parent: "Run", args) -> int:
    """``wmlab fit --resume SWEEPNAME``: the sweep's grid from its run, what is left of it run."""
    from wmlab import preflight

    if args.method or args.env or args.seeds is not None or args.overrides or args.preset or args.config:
        raise ConfigError("--resume SWEEPNAME runs the sweep as it was started; drop --method, --env, "
                          "--seeds, presets, files and overrides (only --jobs may change)")
    check_jobs(args.jobs)
    spec = Spec.from_json(parent.data.tags[SPEC_TAG])
    cfg = check(spec)
    preflight.storage(cfg)
    from wmlab.tracking.run import SWEEP_TAG

    return Sweep(spec, parent.data.tags[SWEEP_TAG], cfg, jobs=args.jobs or 1).run()


def sweep_named(ref: str, uri: Optional[str] = None) -> Optional["Run"]:
    """The sweep run ``ref`` names (a sweep name or the id of a sweep's run) in the store
    ``uri`` (resolved like :func:`wmlab.tracking.tracking_uri`), if any."""
    from wmlab.tracking import client_for
    from wmlab.tracking.run import KIND_TAG

    client = client_for(uri)
    run = find_parent(client, ref)
    if run is not None:
        return run
    from wmlab.tracking.lookup import find_runs

    runs = [r for r in find_runs(client, ref) if r.data.tags.get(KIND_TAG) == "sweep"]
    return runs[0] if runs else None

