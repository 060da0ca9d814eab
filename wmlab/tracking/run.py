"""MLflow tracking: where runs are stored, one run per :class:`Tracker`, and a Lightning logger.

Store resolution (:func:`tracking_uri`): ``tracking.uri`` from the config, else
``$MLFLOW_TRACKING_URI``, else the local store ``./mlflow/``: an embedded SQLite database
``./mlflow/mlflow.db`` with artifacts under ``./mlflow/artifacts/<experiment>/<run id>/``
(no server needed;
``wmlab ui`` or :func:`ui` shows it). Any ``sqlite:///`` store keeps its artifacts in an
``artifacts/`` folder next to the database file.

A :class:`Tracker` owns one MLflow run through its own :class:`mlflow.MlflowClient` (never
the fluent, process-global API), so several runs and tests in one process stay independent.
Metrics are buffered and written with ``log_batch`` every few seconds (one host transfer per
flush for tensor values); the x-axis of every metric is env steps (see
:class:`MlflowEnvStepLogger`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Optional, Sequence

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

TERMINAL_STATUSES = ("FINISHED", "KILLED", "FAILED")

# MLflow's limits (mlflow.utils.validation), restated to avoid importing it eagerly.
_MAX_METRICS_PER_BATCH = 1000
_MAX_PARAMS_TAGS_PER_BATCH = 100
_MAX_PARAM_VAL_LENGTH = 6000
_MAX_TAG_VAL_LENGTH = 8000

_RUN_ID_RE = re.compile(r"^[0-9a-f]{32}$")

# Loggers that print "Creating initial MLflow database tables..." and alembic migrations.
_NOISY_LOGGERS = ("mlflow.store.db.utils", "mlflow.store.tracking.sqlalchemy_store", "alembic",
                  "alembic.runtime.migration")


# --------------------------------------------------------------------------------------
# Store resolution
# --------------------------------------------------------------------------------------


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


def _experiment_id(client: "MlflowClient", name: str) -> str:
    """Id of experiment ``name``, created if missing.

    In a SQLite store its artifact location is ``<artifact root>/<name, made filename-safe>``,
    so a run's artifacts are ``mlflow/artifacts/<experiment>/<run id>/artifacts/``.
    """
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage != "active":
            raise WmlabError(f"MLflow experiment {name!r} is deleted; restore it in the UI "
                             f"or choose another with tracking.experiment=NAME")
        return exp.experiment_id
    root = artifact_root(client.tracking_uri)
    location = f"{root}/{_safe_name(name)}" if root is not None else None
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException:  # created meanwhile by a parallel run
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


# --------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------


def git_revision(cwd: str | Path | None = None) -> Optional[str]:
    """``HEAD``'s commit of the git checkout holding ``cwd``, plus ``-dirty`` if tracked files
    have uncommitted changes; ``None`` outside a checkout or without git."""
    git = shutil.which("git")
    if git is None:
        return None
    try:
        head = subprocess.run([git, "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                              text=True, timeout=10)
        if head.returncode != 0:
            return None
        rev = head.stdout.strip()
        status = subprocess.run([git, "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                                capture_output=True, text=True, timeout=30)
        if status.returncode == 0 and status.stdout.strip():
            rev += "-dirty"
        return rev or None
    except (OSError, subprocess.SubprocessError):
        return None


def _wmlab_version() -> str:
    try:
        from wmlab import __version__

        return str(__version__)
    except ImportError:  # pragma: no cover
        return "unknown"


def _select(cfg: Any, key: str, default: Any = None) -> Any:
    from omegaconf import OmegaConf

    if cfg is None:
        return default
    value = OmegaConf.select(cfg, key, default=default)
    return default if value is None else value


def _clip(value: Any, limit: int) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_.") or "unnamed"


def _tensor_type() -> Optional[type]:
    """``torch.Tensor`` if torch is imported (no tensor can exist otherwise), else ``None``."""
    torch = sys.modules.get("torch")
    return getattr(torch, "Tensor", None)


def _check_metric_name(key: str) -> None:
    """Raise ``ValueError`` now for a name MLflow would reject at flush time (with the batch)."""
    try:
        from mlflow.exceptions import MlflowException
        from mlflow.utils.validation import _validate_metric_name
    except ImportError:  # pragma: no cover - private helper moved; MLflow still checks
        return
    try:
        _validate_metric_name(key)
    except MlflowException as e:
        raise ValueError(f"invalid metric name {key!r}: {e.message}") from None


def _status_for(exc: Optional[BaseException]) -> str:
    """Terminal status for a ``with`` block that ended with ``exc``.

    Lightning turns Ctrl+C inside ``Trainer.fit`` into ``sys.exit(1)`` raised while handling
    the ``KeyboardInterrupt``; the interrupt is then found in the exception's context.
    """
    if exc is None:
        return "FINISHED"
    if isinstance(exc, SystemExit) and exc.code in (None, 0):
        return "FINISHED"
    seen: set[int] = set()
    e: Optional[BaseException] = exc
    while e is not None and id(e) not in seen:
        if isinstance(e, KeyboardInterrupt):
            return "KILLED"
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return "FAILED"


# --------------------------------------------------------------------------------------
# Tracker
# --------------------------------------------------------------------------------------


class Tracker:
    """One MLflow run, owned through its own client. Create it with :meth:`start`.

    Use it as a context manager: the run ends FINISHED on normal exit, KILLED on
    ``KeyboardInterrupt`` and FAILED on any other exception (which propagates).
    """

    def __init__(self, client: "MlflowClient", run_id: str, *, experiment_name: str = "",
                 flush_every_s: float = 10.0, max_buffer: int = 10_000, resumed: bool = False):
        """Wrap an existing run; most callers want :meth:`start` instead."""
        self.client = client
        self._run_id = run_id
        run = client.get_run(run_id)
        self._artifact_uri = run.info.artifact_uri
        self._experiment_id = run.info.experiment_id
        self.experiment_name = experiment_name or client.get_experiment(self._experiment_id).name
        self.run_name = run.info.run_name
        self.flush_every_s = float(flush_every_s)
        self.max_buffer = int(max_buffer)
        self.resumed = resumed
        self._buffer: list[tuple[str, Any, int, int]] = []
        self._lock = threading.Lock()
        self._last_flush = time.monotonic()
        self._ended: Optional[str] = None
        self._valid_keys: set[str] = set()

    # --- creation ----------------------------------------------------------------------
    @classmethod
    def start(
        cls,
        cfg: Any,
        *,
        method: str,
        env: str,
        seed: int,
        plugin_dist: str,
        plugin_version: str,
        run_id: str | None = None,
        flush_every_s: float = 10.0,
    ) -> "Tracker":
        """Start a new run, or re-open ``run_id`` (resume: same run, status back to RUNNING).

        The store is ``tracking_uri(cfg.tracking.uri)``, the experiment
        ``cfg.tracking.experiment`` (created if needed), the run name ``cfg.run.name`` or
        ``<method>-<env>-s<seed>``. A new run gets, once: the resolved config as artifact
        ``config.yaml``, the flattened config as params, and the tags ``wmlab.method``,
        ``wmlab.env``, ``wmlab.seed``, ``wmlab.plugin``, ``wmlab.plugin_version``,
        ``wmlab.version``, ``wmlab.git_revision`` (in a git checkout) and ``mlflow.runName``.
        A resumed run keeps what it has (MLflow forbids changing a param).

        Raises :class:`~wmlab.errors.WmlabError` if ``run_id`` is not in the store.
        """
        from mlflow.exceptions import MlflowException

        uri = _select(cfg, "tracking.uri")
        experiment = str(_select(cfg, "tracking.experiment", "wmlab"))
        client = client_for(uri)

        if run_id is not None:
            try:
                run = client.get_run(run_id)
            except MlflowException:
                raise WmlabError(f"no MLflow run {run_id!r} in {client.tracking_uri}") from None
            if run.info.lifecycle_stage != "active":
                raise WmlabError(f"MLflow run {run_id!r} is deleted; restore it in the UI first")
            client.update_run(run_id, status="RUNNING")
            exp_name = client.get_experiment(run.info.experiment_id).name
            return cls(client, run_id, experiment_name=exp_name, flush_every_s=flush_every_s,
                       resumed=True)

        exp_id = _experiment_id(client, experiment)
        name = _select(cfg, "run.name") or f"{method}-{env}-s{seed}"
        tags = {
            "mlflow.runName": name,
            "mlflow.source.name": "wmlab",
            "mlflow.source.type": "LOCAL",
            "wmlab.method": method,
            "wmlab.env": env,
            "wmlab.seed": str(seed),
            "wmlab.plugin": plugin_dist,
            "wmlab.plugin_version": plugin_version,
            "wmlab.version": _wmlab_version(),
        }
        with contextlib.suppress(Exception):
            import getpass

            tags["mlflow.user"] = getpass.getuser()
        rev = git_revision()
        if rev is not None:
            tags["wmlab.git_revision"] = rev
            tags["mlflow.source.git.commit"] = rev.removesuffix("-dirty")
        run = client.create_run(exp_id, tags={k: _clip(v, _MAX_TAG_VAL_LENGTH)
                                              for k, v in tags.items()}, run_name=name)
        tracker = cls(client, run.info.run_id, experiment_name=experiment,
                      flush_every_s=flush_every_s)
        try:
            if cfg is not None:
                from omegaconf import DictConfig

                from wmlab.config import flatten, to_yaml

                if isinstance(cfg, DictConfig):
                    tracker.log_text(to_yaml(cfg), "config.yaml")
                    tracker.log_params(flatten(cfg))
        except BaseException:
            tracker.end("FAILED")
            raise
        return tracker

    # --- identity ----------------------------------------------------------------------
    @property
    def run_id(self) -> str:
        """The MLflow run id (32 hex digits)."""
        return self._run_id

    @property
    def experiment_id(self) -> str:
        """The MLflow experiment id of the run."""
        return self._experiment_id

    @property
    def artifact_uri(self) -> str:
        """Where the run's artifacts live (a ``file://`` URI for the local store)."""
        return self._artifact_uri

    @property
    def tracking_uri(self) -> str:
        """The store this run lives in."""
        return self.client.tracking_uri

    @property
    def ended(self) -> bool:
        """Whether :meth:`end` was called."""
        return self._ended is not None

    # --- params and tags ---------------------------------------------------------------
    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log params (values stringified, clipped to MLflow's 6000 chars, 100 per batch)."""
        from mlflow.entities import Param

        items = [Param(str(k), _clip(v, _MAX_PARAM_VAL_LENGTH)) for k, v in params.items()]
        for chunk in _chunks(items, _MAX_PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(self._run_id, params=chunk, synchronous=True)

    def set_tag(self, key: str, value: Any) -> None:
        """Set (or overwrite) a tag on the run, e.g. ``wmlab.checkpoint_dir``."""
        self.client.set_tag(self._run_id, key, _clip(value, _MAX_TAG_VAL_LENGTH), synchronous=True)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set several tags in batches of 100."""
        from mlflow.entities import RunTag

        items = [RunTag(str(k), _clip(v, _MAX_TAG_VAL_LENGTH)) for k, v in tags.items()]
        for chunk in _chunks(items, _MAX_PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(self._run_id, tags=chunk, synchronous=True)

    # --- metrics -----------------------------------------------------------------------
    def log_metrics(self, metrics: Mapping[str, Any], step: int) -> None:
        """Buffer ``metrics`` (floats, ints, numpy or one-element tensors) at env step ``step``.

        Nothing is transferred or written here: the buffer goes to MLflow with ``log_batch``
        when :attr:`flush_every_s` seconds have passed since the last flush, when it holds
        :attr:`max_buffer` values, or on :meth:`flush` / :meth:`end`.
        """
        if self._ended is not None:
            warnings.warn(f"metrics logged after the run ended ({list(metrics)[:3]}...) are dropped",
                          RuntimeWarning, stacklevel=2)
            return
        ts = int(time.time() * 1000)
        step = int(step)
        tensor = _tensor_type()
        rows = []
        for key, value in metrics.items():
            key = str(key)
            if key not in self._valid_keys:
                _check_metric_name(key)
                self._valid_keys.add(key)
            if tensor is not None and isinstance(value, tensor):
                if value.numel() != 1:
                    raise ValueError(f"metric {key!r} must be a scalar, got a tensor of shape "
                                     f"{tuple(value.shape)}")
                value = value.detach()
            elif not isinstance(value, float):
                value = float(value)
            rows.append((key, value, step, ts))
        with self._lock:
            self._buffer.extend(rows)
            due = (len(self._buffer) >= self.max_buffer
                   or time.monotonic() - self._last_flush >= self.flush_every_s)
        if due:
            self.flush()

    def flush(self) -> None:
        """Write buffered metrics now (one host transfer per device, batches of 1000)."""
        from mlflow.entities import Metric

        with self._lock:
            rows, self._buffer = self._buffer, []
            self._last_flush = time.monotonic()
        if not rows:
            return
        values: list[Any] = [v for _, v, _, _ in rows]
        tensor = _tensor_type()
        by_device: dict[Any, list[int]] = {}
        for i, v in enumerate(values):
            if tensor is not None and isinstance(v, tensor):
                by_device.setdefault(v.device, []).append(i)
        if by_device:
            import torch
        for device, idx in by_device.items():
            dtype = torch.float64 if device.type == "cpu" else torch.float32
            host = torch.stack([values[i].reshape(()).to(dtype) for i in idx]).cpu().tolist()
            for i, x in zip(idx, host):
                values[i] = x
        metrics = [Metric(k, float(v), ts, s) for (k, _, s, ts), v in zip(rows, values)]
        for chunk in _chunks(metrics, _MAX_METRICS_PER_BATCH):
            self.client.log_batch(self._run_id, metrics=chunk, synchronous=True)

    # --- artifacts ---------------------------------------------------------------------
    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Copy a local file (or a whole folder) into the run's artifacts, under
        ``artifact_path`` if given."""
        path = Path(path)
        if path.is_dir():
            self.client.log_artifacts(self._run_id, str(path), artifact_path)
        else:
            self.client.log_artifact(self._run_id, str(path), artifact_path)

    def log_text(self, text: str, artifact_file: str) -> None:
        """Write ``text`` as the artifact ``artifact_file`` (e.g. ``config.yaml``)."""
        self.client.log_text(self._run_id, text, artifact_file)

    def log_video(self, frames: Any, name: str, step: int, fps: int = 30) -> str:
        """Encode ``frames`` (``[T, H, W, 3]`` ``uint8``) as mp4 and log it under ``videos/``.

        The file is ``videos/<name>_step<env step, 9 digits>.mp4`` (``.gif`` if ffmpeg is
        missing); returns that artifact path.
        """
        from wmlab.video import write_mp4

        with tempfile.TemporaryDirectory(prefix="wmlab-video-") as tmp:
            written = write_mp4(frames, Path(tmp) / f"{_safe_name(name)}_step{int(step):09d}.mp4",
                                fps=fps)
            self.client.log_artifact(self._run_id, str(written), "videos")
            return f"videos/{written.name}"

    # --- ending ------------------------------------------------------------------------
    def end(self, status: str = "FINISHED") -> None:
        """Flush and set the terminal status (FINISHED, KILLED or FAILED). A second call does
        nothing."""
        status = status.upper()
        if status not in TERMINAL_STATUSES:
            raise ValueError(f"status must be one of {', '.join(TERMINAL_STATUSES)}, got {status!r}")
        if self._ended is not None:
            return
        self._ended = status
        try:
            self.flush()
        finally:
            self.client.set_terminated(self._run_id, status=status)

    def __enter__(self) -> "Tracker":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            self.end(_status_for(exc))
        except Exception as e:
            if exc is None:
                raise
            # never hide the error that ended the run behind a tracking error
            log.error("could not end MLflow run %s: %s", self._run_id, e)
        return False

    def __repr__(self) -> str:
        return (f"Tracker(run_id={self._run_id!r}, name={self.run_name!r}, "
                f"experiment={self.experiment_name!r}, uri={self.tracking_uri!r})")


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


# --------------------------------------------------------------------------------------
# Lightning logger
# --------------------------------------------------------------------------------------


def _build_logger_class() -> type:
    """Define :class:`MlflowEnvStepLogger` on first use, so that importing this module (e.g. for
    ``wmlab ui``) does not import Lightning and torch (several seconds)."""
    from lightning.pytorch.loggers import Logger
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    class MlflowEnvStepLogger(Logger):
        """A Lightning logger that writes through a :class:`Tracker` against env steps.

        Lightning's ``step`` counts optimizer steps (several per update with manual
        optimization); it is ignored and ``step_fn()`` (the core passes
        ``lambda: progress.env_steps``) is the x-axis of every metric. Lightning's
        convenience ``epoch`` metric is dropped. Hyperparameters are not logged here (the
        Tracker logged the whole config). :meth:`finalize` flushes but never ends the run: the
        CLI owns the run's lifetime. Only rank 0 logs.
        """

        def __init__(self, tracker: Tracker, step_fn: Callable[[], int]):
            super().__init__()
            self._tracker = tracker
            self._step_fn = step_fn

        @property
        def name(self) -> str:
            """The MLflow experiment name."""
            return self._tracker.experiment_name

        @property
        def version(self) -> str:
            """The MLflow run id."""
            return self._tracker.run_id

        @property
        def experiment(self) -> Tracker:
            """The :class:`Tracker` (e.g. ``trainer.logger.experiment.log_video(...)``)."""
            return self._tracker

        @rank_zero_only
        def log_metrics(self, metrics: Mapping[str, Any], step: Optional[int] = None) -> None:
            """Buffer ``metrics`` at env step ``step_fn()``; Lightning's ``step`` is ignored."""
            metrics = {k: v for k, v in metrics.items() if k != "epoch"}
            if metrics:
                self._tracker.log_metrics(metrics, step=int(self._step_fn()))

        @rank_zero_only
        def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
            """No-op: the Tracker logged the resolved config as params when the run started."""

        @rank_zero_only
        def finalize(self, status: str) -> None:
            """Flush buffered metrics; the run stays open (the CLI ends it)."""
            if not self._tracker.ended:
                self._tracker.flush()

    MlflowEnvStepLogger.__module__ = __name__
    MlflowEnvStepLogger.__qualname__ = "MlflowEnvStepLogger"
    return MlflowEnvStepLogger


def __getattr__(name: str) -> Any:
    if name == "MlflowEnvStepLogger":
        cls = globals()[name] = _build_logger_class()
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if TYPE_CHECKING:
    from lightning.pytorch.loggers import Logger as _Logger

    class MlflowEnvStepLogger(_Logger):  # noqa: F811 - the real one is built lazily
        def __init__(self, tracker: Tracker, step_fn: Callable[[], int]): ...


# --------------------------------------------------------------------------------------
# UI
# --------------------------------------------------------------------------------------


def _mlflow_command() -> list[str]:
    exe = Path(sys.executable).parent / "mlflow"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("mlflow")
    return [found] if found else [sys.executable, "-m", "mlflow"]


def ui_command(store_uri: str | None, port: int = 5000) -> tuple[list[str], dict[str, str]]:
    """The ``mlflow server`` command line and environment :func:`ui` runs (for tests/tools)."""
    uri = tracking_uri(store_uri)
    cmd = _mlflow_command() + [
        "server",
        "--backend-store-uri", uri,
        "--host", "127.0.0.1",
        "--port", str(int(port)),
        "--workers", "1",
    ]
    root = artifact_root(uri)
    if root is not None:
        # Runs of a local store have file:// artifact URIs, which the server reads directly;
        # experiments created in the UI get the same root.
        cmd += ["--default-artifact-root", root, "--no-serve-artifacts"]
    env = dict(os.environ)
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    env.pop("MLFLOW_TRACKING_URI", None)
    return cmd, env


def ui(store_uri: str | None, port: int = 5000) -> int:
    """Serve the MLflow UI on the store ``store_uri`` (resolved like :func:`tracking_uri`).

    Runs ``mlflow server`` in the foreground on ``http://127.0.0.1:<port>`` with one worker
    and no job execution (ready in about 5 s) until Ctrl+C; returns its exit code. If the
    store is already a tracking server (``http(s)://``), prints its address and returns 0.
    """
    uri = tracking_uri(store_uri)
    if uri.startswith(("http://", "https://")):
        print(f"The tracking store is already an MLflow server: open {uri}")
        return 0
    db = sqlite_path(uri)
    if db is not None and not db.exists():
        client_for(uri)  # create the store with wmlab's artifact root before the server does
    cmd, env = ui_command(uri, port)
    print(f"MLflow UI on http://127.0.0.1:{port} (store {uri}); Ctrl+C stops it", flush=True)
    proc = subprocess.Popen(cmd, env=env)
    previous = None
    if threading.current_thread() is threading.main_thread():
        # Pass a SIGTERM on to the server (it stops its uvicorn worker) instead of orphaning it.
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: proc.send_signal(signum))
    try:
        return proc.wait()
    except KeyboardInterrupt:
        # From a terminal the server got the same SIGINT; otherwise forward it.
        with contextlib.suppress(OSError):
            proc.send_signal(signal.SIGINT)
        try:
            return proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                return proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                return proc.wait()
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


class NullTracker:
    """Stands in for a :class:`Tracker` on distributed ranks other than 0: logs nothing.

    Rank 0 owns the MLflow run; the other ranks only need its id."""

    def __init__(self, run_id: str = ""):
        self.run_id = run_id

    def __enter__(self) -> "NullTracker":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        return False

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: None

