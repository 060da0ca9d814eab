"""Where runs are stored: store resolution, clients, experiments and run lookup."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Optional

from wmlab.errors import WmlabError

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

log = logging.getLogger(__name__)

#: Folder of the default local store, relative to the working directory.
LOCAL_STORE_DIR = "mlflow"
#: Database file of the local store, inside :data:`LOCAL_STORE_DIR`.
LOCAL_DB_NAME = "mlflow.db"
#: Artifact folder of a SQLite store, next to its database file.
ARTIFACTS_DIR = "artifacts"

_RUN_ID_RE = re.compile(r"^[0-9a-f]{32}$")

# Loggers that print "Creating initial MLflow database tables..." and alembic migrations.
_NOISY_LOGGERS = ("mlflow.store.db.utils", "mlflow.store.tracking.sqlalchemy_store", "alembic",
                  "alembic.runtime.migration")


def local_store_uri(root: str | Path | None = None) -> str:
    """The default local store: ``sqlite:///<root>/mlflow/mlflow.db`` (``root`` defaults to cwd)."""
    base = Path(root) if root is not None else Path.cwd()
    return f"sqlite:///{(base / LOCAL_STORE_DIR / LOCAL_DB_NAME).resolve().as_posix()}"


def tracking_uri(cfg_tracking_uri: str | None) -> str:
    """Resolve where runs are stored.

    The config value if set, else ``$MLFLOW_TRACKING_URI`` if set, else the local store
    ``sqlite:///<cwd>/mlflow/mlflow.db``. For a ``sqlite:///`` store the folder holding the
    database (and its ``artifacts/`` folder) is created; no server is started.
    """
    uri = cfg_tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or local_store_uri()
    db = sqlite_path(uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
        (db.parent / ARTIFACTS_DIR).mkdir(exist_ok=True)
    return uri


def sqlite_path(uri: str) -> Optional[Path]:
    """The absolute database path of a ``sqlite:///`` URI, or ``None`` for any other store."""
    if not uri.startswith("sqlite:"):
        return None
    from sqlalchemy.engine import make_url

    database = make_url(uri).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).expanduser().resolve()


def artifact_root(uri: str) -> Optional[str]:
    """Artifact location (a ``file://`` URI) wmlab gives new experiments of the store ``uri``.

    For a SQLite store: ``<folder of the database>/artifacts``. For other stores ``None``:
    the store or server decides (a tracking server proxies artifacts itself).
    """
    db = sqlite_path(uri)
    if db is None:
        return None
    return (db.parent / ARTIFACTS_DIR).as_uri()


def safe_name(name: str) -> str:
    """``name`` with anything but letters, digits, ``.``, ``_`` and ``-`` replaced, for file names."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_.") or "unnamed"


@contextlib.contextmanager
def _quiet_mlflow() -> Iterator[None]:
    """Silence MLflow's INFO lines and alembic output while a store is created or opened."""
    saved = []
    for name in _NOISY_LOGGERS:
        lg = logging.getLogger(name)
        saved.append((lg, lg.level))
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in saved:
            lg.setLevel(level)


def _init_sqlite_store(uri: str) -> None:
    """Create a SQLite store (tables, the Default experiment) with wmlab's artifact root.

    Done once per database, under a file lock so parallel runs started together do not race
    on the schema migration. MLflow itself would give the Default experiment ``./mlruns/0``.
    """
    db = sqlite_path(uri)
    if db is None or db.exists():
        return
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    lock_path = db.parent / f".{db.name}.init.lock"
    with open(lock_path, "w") as lock:
        try:
            import fcntl

            fcntl.flock(lock, fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover - not POSIX
            pass
        if db.exists() and db.stat().st_size > 0:
            return
        store = SqlAlchemyStore(uri, artifact_root(uri))
        store.engine.dispose()


def client_for(uri: str | None) -> "MlflowClient":
    """An :class:`mlflow.MlflowClient` on the resolved store, creating a SQLite store if needed.

    The first use of a new SQLite store creates its tables (about 1.5 s); opening an existing
    one takes about 0.5 s the first time in a process.
    """
    resolved = tracking_uri(uri)
    with _quiet_mlflow():
        from mlflow import MlflowClient

        try:
            _init_sqlite_store(resolved)
        except Exception as e:  # the client below creates it the MLflow way
            log.debug("could not pre-initialise %s: %s", resolved, e)
        client = MlflowClient(tracking_uri=resolved)
        client.search_experiments(max_results=1)  # opens (and migrates) the store now, quietly
    return client


def experiment_id(client: "MlflowClient", name: str) -> str:
    """Id of experiment ``name``, created if missing.

    In a SQLite store its artifact location is ``<artifact root>/<name, made filename-safe>``,
    so a run's artifacts are ``mlflow/artifacts/<experiment>/<run id>/artifacts/``. Raises
    :class:`~wmlab.errors.WmlabError` if the experiment is deleted.
    """
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage != "active":
            raise WmlabError(f"MLflow experiment {name!r} is deleted; restore it in the UI "
                             f"or choose another with tracking.experiment=NAME")
        return exp.experiment_id
    root = artifact_root(client.tracking_uri)
    location = f"{root}/{safe_name(name)}" if root is not None else None
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException:  # created meanwhile by a parallel run
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def get_run(client: "MlflowClient", run_id: str) -> "Run":
    """The active run ``run_id``; :class:`~wmlab.errors.WmlabError` if it is missing or deleted."""
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise WmlabError(f"no MLflow run {run_id!r} in {client.tracking_uri}") from None
    if run.info.lifecycle_stage != "active":
        raise WmlabError(f"MLflow run {run_id!r} is deleted; restore it in the UI first")
    return run


def find_run(run_id_or_name: str, *, uri: str | None = None,
             experiment: str | None = None) -> "Run":
    """Look a run up by id, or by name (the most recently started run of that name wins).

    ``uri`` is resolved like :func:`tracking_uri`; ``experiment`` restricts a lookup by
    name to one experiment. Returns the :class:`mlflow.entities.Run`: ``run.info``
    (``run_id``, ``run_name``, ``status``, ``artifact_uri``, ``experiment_id``...) and
    ``run.data.tags`` / ``run.data.params`` (e.g. the CLI reads the tag
    ``wmlab.checkpoint_dir`` back to resume). Raises :class:`~wmlab.errors.WmlabError` if
    nothing matches.
    """
    from mlflow.entities import ViewType
    from mlflow.exceptions import MlflowException

    client = client_for(uri)
    if _RUN_ID_RE.match(run_id_or_name):
        try:
            return client.get_run(run_id_or_name)
        except MlflowException:
            pass
    if experiment is not None:
        exp = client.get_experiment_by_name(experiment)
        exp_ids = [exp.experiment_id] if exp is not None else []
    else:
        exp_ids = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    if exp_ids:
        escaped = run_id_or_name.replace("\\", "\\\\").replace("'", "\\'")
        found = client.search_runs(exp_ids, filter_string=f"attributes.run_name = '{escaped}'",
                                   order_by=["attributes.start_time DESC"], max_results=1)
        if found:
            return found[0]
    where = f" in experiment {experiment!r}" if experiment else ""
    raise WmlabError(f"no MLflow run with id or name {run_id_or_name!r}{where} "
                     f"in {client.tracking_uri}")


# --- runs whose process is gone, and what a run logged before it stopped ---------------------

#: tags that say which process owns a RUNNING run
HOST_TAG, PID_TAG, PID_START_TAG = "wmlab.host", "wmlab.pid", "wmlab.pid_start"


def _process_start(pid: int) -> Optional[str]:
    """When process ``pid`` started (clock ticks since boot, from ``/proc``), to tell it from a
    later process given the same pid; ``None`` where ``/proc`` has no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]  # field 22, counted after the command name


def owner_tags() -> dict[str, str]:
    """The tags naming this process as the owner of a run (set when a run starts or resumes)."""
    import socket

    pid = os.getpid()
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(pid),
            PID_START_TAG: _process_start(pid) or ""}


def _owner_gone(tags: dict[str, str]) -> bool:
    """Whether the process named by a run's owner tags has ended (only decidable for this
    host; runs of other hosts, or without the tags, are never taken for dead)."""
    import socket

    if tags.get(HOST_TAG) != socket.gethostname() or not tags.get(PID_TAG, "").isdigit():
        return False
    pid = int(tags[PID_TAG])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    started = tags.get(PID_START_TAG)
    return bool(started) and _process_start(pid) != started  # the pid now names another process


def mark_dead_runs_killed(client: "MlflowClient") -> list[str]:
    """Set every RUNNING run of the store whose owning process (on this host) is gone, after a
    ``kill -9`` or a power loss, to KILLED; returns their ids. Every ``wmlab fit`` and
    ``wmlab eval`` does this first; a resume then sets its run RUNNING again."""
    from mlflow.entities import ViewType

    exp_ids = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ACTIVE_ONLY)]
    dead = []
    for start in range(0, len(exp_ids), 100):
        for run in client.search_runs(exp_ids[start:start + 100], "attributes.status = 'RUNNING'",
                                      max_results=1000):
            if _owner_gone(run.data.tags):
                client.set_terminated(run.info.run_id, status="KILLED")
                dead.append(run.info.run_id)
    return dead


def logged_so_far(client: "MlflowClient", run_id: str) -> dict[str, tuple[int, int, int]]:
    """``{metric: (last env step, values logged at that step, values in all)}`` of a run,
    what a resumed run must not log again (see :class:`~wmlab.tracking.run.Tracker`)."""
    marks = {}
    for key in client.get_run(run_id).data.metrics:
        steps = [m.step for m in client.get_metric_history(run_id, key)]
        if steps:
            last = max(steps)
            marks[key] = (last, steps.count(last), len(steps))
    return marks
