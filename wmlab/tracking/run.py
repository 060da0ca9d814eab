"""One MLflow run: :class:`Tracker` (rank 0) and :class:`NullTracker` (other ranks)."""

from __future__ import annotations

import contextlib
import logging
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Optional, Sequence

from wmlab.tracking import store

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Metric
    from mlflow.utils.async_logging.run_operations import RunOperations

log = logging.getLogger(__name__)

TERMINAL_STATUSES = ("FINISHED", "KILLED", "FAILED")

# MLflow's limits (mlflow.utils.validation), restated to avoid importing it eagerly.
_MAX_METRICS_PER_BATCH = 1000
_MAX_PARAMS_TAGS_PER_BATCH = 100
_MAX_PARAM_VAL_LENGTH = 6000
_MAX_TAG_VAL_LENGTH = 8000
# Pending asynchronous writes kept before waiting on them (they are long done by then).
_MAX_PENDING_OPS = 100


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


def _tensor_type() -> Optional[type]:
    """``torch.Tensor`` if torch is imported (no tensor can exist otherwise), else ``None``."""
    torch = sys.modules.get("torch")
    return getattr(torch, "Tensor", None)


def _to_floats(tensors: Sequence[Any]) -> list[float]:
    """Scalar tensors as floats, with one host transfer per device."""
    import torch

    values: list[float] = [0.0] * len(tensors)
    by_device: dict[Any, list[int]] = {}
    for i, t in enumerate(tensors):
        by_device.setdefault(t.device, []).append(i)
    for device, idx in by_device.items():
        dtype = torch.float64 if device.type == "cpu" else torch.float32
        host = torch.stack([tensors[i].reshape(()).to(dtype) for i in idx]).cpu().tolist()
        for i, x in zip(idx, host):
            values[i] = x
    return values


def _check_metric_name(key: str) -> None:
    """Raise ``ValueError`` now for a name MLflow would reject later, in its writer thread."""
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


def _parent_tags(client: "MlflowClient", parent_id: Optional[str], exp_id: str) -> dict[str, str]:
    """Tags nesting a new run under ``parent_id`` (``tracking.parent``): ``mlflow.parentRunId``,
    and the parent's sweep name (``wmlab.sweep``) if it is a sweep. The parent must be an active
    run of the same experiment (the MLflow UI nests runs within one experiment)."""
    from wmlab.errors import WmlabError

    if not parent_id:
        return {}
    parent = store.get_run(client, str(parent_id))
    if parent.info.experiment_id != exp_id:
        raise WmlabError(f"tracking.parent {parent_id} is a run of another experiment; a nested run "
                         f"must be in its parent's experiment")
    tags = {"mlflow.parentRunId": parent.info.run_id}
    if parent.data.tags.get(SWEEP_TAG):
        tags[SWEEP_TAG] = parent.data.tags[SWEEP_TAG]
    return tags


#: tag naming the sweep a run belongs to (on the sweep's parent run and on each of its runs)
SWEEP_TAG = "wmlab.sweep"
#: tag saying what a run that is no training run is: ``sweep`` (a sweep's parent), ``compare``
KIND_TAG = "wmlab.kind"


class Tracker:
    """One MLflow run, owned through its own client. Create it with :meth:`start`.

    Use it as a context manager: the run ends FINISHED on normal exit, KILLED on
    ``KeyboardInterrupt`` and FAILED on any other exception (which propagates).

    Metrics go to MLflow's asynchronous logging (``log_batch(..., synchronous=False)``):
    one ``log_batch`` per :meth:`log_metrics` call, written by MLflow's writer thread.
    Tensor values are held, still on their device, until :meth:`flush`, until 1000 of them
    wait or until :attr:`flush_every_s` seconds after the first of them, and then turned into
    floats together (one host transfer per device, not one per value).

    Exact curves across resume: the core flushes before every checkpoint, so everything
    logged up to a checkpoint is stored before the checkpoint exists, and the checkpoint
    holds how many values of each metric the run had logged (:meth:`metric_counts`). A run
    resumed from it replays what came after and logs those values again;
    :meth:`resume_from` gives the tracker the checkpoint's counts, and it drops, per
    metric, as many values as the run holds beyond them. Every metric thus keeps what the
    run left alone would hold (one value per env step for the env-step clocked ones; as many
    as it logs for those of offline and search stages, which take no env step), with no gap,
    whether the previous attempt ended by Ctrl-C, SIGTERM, ``kill -9`` or a power loss (the
    replayed steps log the same values where the resume is deterministic). Checkpoints
    without counts (written before they existed) fall back to the env step: the tracker
    reads, per metric, the last env step the run holds and how many values it holds there
    (:func:`~wmlab.tracking.store.logged_so_far`) and drops what is logged again up to it.
    """

    def __init__(self, client: "MlflowClient", run_id: str, *, experiment_name: str = "",
                 flush_every_s: float = 10.0, resumed: bool = False):
        """Wrap an existing run; most callers want :meth:`start` instead."""
        self.client = client
        self._run_id = run_id
        run = client.get_run(run_id)
        self._artifact_uri = run.info.artifact_uri
        self._experiment_id = run.info.experiment_id
        self.experiment_name = experiment_name or client.get_experiment(self._experiment_id).name
        self.run_name = run.info.run_name
        self.flush_every_s = float(flush_every_s)
        self.resumed = resumed
        self._lock = threading.Lock()
        self._pending: list["RunOperations"] = []  # asynchronous writes not yet waited on
        self._held: list[tuple[str, Any, int, int]] = []  # tensor values: key, value, step, ts
        self._held_since = 0.0
        self._ended: Optional[str] = None
        self._valid_keys: set[str] = set()
        # resumed: {metric: [last env step stored, values stored there not yet seen again]}
        marks = store.logged_so_far(client, run_id) if resumed else {}
        self._stored = {k: [last, at_last] for k, (last, at_last, _) in marks.items()}
        self._held_counts = {k: total for k, (_, _, total) in marks.items()}  # values the run holds
        self._counts: dict[str, int] = {}  # values logged per metric over the whole run
        self._skip: dict[str, int] = {}  # values a resumed run logs again, still to drop

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
        ``<method>-<env>-s<seed>``, made unique in the experiment with a suffix of 4 hex
        digits (always for the default, only if taken for ``cfg.run.name``; see
        :mod:`wmlab.tracking.lookup`). A new run gets, once: the resolved config as artifact
        ``config.yaml``, the flattened config as params, and the tags ``wmlab.method``,
        ``wmlab.env``, ``wmlab.seed``, ``wmlab.plugin``, ``wmlab.plugin_version``,
        ``wmlab.version``, ``wmlab.git_revision`` (in a git checkout) and ``mlflow.runName``.
        A resumed run keeps what it has (MLflow forbids changing a param).

        Raises :class:`~wmlab.errors.WmlabError` if ``run_id`` is not in the store.
        """
        client = store.client_for(_select(cfg, "tracking.uri"))
        experiment = str(_select(cfg, "tracking.experiment", "wmlab"))

        if run_id is not None:
            run = store.get_run(client, run_id)
            client.update_run(run_id, status="RUNNING")
            for key, value in store.owner_tags().items():
                client.set_tag(run_id, key, value, synchronous=True)
            exp_name = client.get_experiment(run.info.experiment_id).name
            return cls(client, run_id, experiment_name=exp_name, flush_every_s=flush_every_s,
                       resumed=True)

        exp_id = store.experiment_id(client, experiment)
        from wmlab.tracking.lookup import unique_run_name

        nesting = _parent_tags(client, _select(cfg, "tracking.parent"), exp_id)

        name = unique_run_name(client, exp_id, _select(cfg, "run.name"), f"{method}-{env}-s{seed}")
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
            **store.owner_tags(),
            **nesting,
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
        """Log ``metrics`` (floats, ints, numpy or one-element tensors) at env step ``step``.

        Names are checked now (``ValueError``); the values go to MLflow's asynchronous
        logging in one ``log_batch`` and are written by MLflow's writer thread. Tensor values
        are held on their device and sent later together (see the class docstring), so no
        call forces a host transfer. :meth:`flush` waits until everything is written.
        """
        if self._ended is not None:
            warnings.warn(f"metrics logged after the run ended ({list(metrics)[:3]}...) are dropped",
                          RuntimeWarning, stacklevel=2)
            return
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        step = int(step)
        tensor = _tensor_type()
        ready: list[Metric] = []
        held = []
        for key, value in metrics.items():
            key = str(key)
            if key not in self._valid_keys:
                _check_metric_name(key)
                self._valid_keys.add(key)
            self._counts[key] = self._counts.get(key, 0) + 1
            if self._skip.get(key):
                self._skip[key] -= 1
                continue
            if self._stored and self._logged_before(key, step):
                continue
            if tensor is not None and isinstance(value, tensor):
                if value.numel() != 1:
                    raise ValueError(f"metric {key!r} must be a scalar, got a tensor of shape "
                                     f"{tuple(value.shape)}")
                held.append((key, value.detach(), step, ts))
            else:
                ready.append(Metric(key, float(value), ts, step))
        self._send(ready)
        if held:
            with self._lock:
                if not self._held:
                    self._held_since = time.monotonic()
                self._held.extend(held)
                due = (len(self._held) >= _MAX_METRICS_PER_BATCH
                       or time.monotonic() - self._held_since >= self.flush_every_s)
            if due:
                self._send(self._release_held())

    def metric_counts(self) -> dict[str, int]:
        """How many values of each metric the run has logged so far, those a resume dropped
        as already stored included (a checkpoint keeps them; see :meth:`resume_from`)."""
        return dict(self._counts)

    def resume_from(self, counts: Mapping[str, int] | None) -> None:
        """Continue from a checkpoint that recorded ``counts`` (:meth:`metric_counts` when it
        was written): the values the run holds beyond them are logged again by the replay,
        and dropped. ``None`` (an older checkpoint) keeps the fallback by env step."""
        if counts is None:
            return
        held = self._held_counts
        self._counts = {str(k): int(v) for k, v in counts.items()}
        self._skip = {k: n - self._counts.get(k, 0) for k, n in held.items() if n > self._counts.get(k, 0)}
        self._stored = {}

    def _logged_before(self, key: str, step: int) -> bool:
        """Whether the run already holds this value of ``key`` at ``step`` (logged by the
        attempt before a resume; see the class docstring)."""
        mark = self._stored.get(key)
        if mark is None:
            return False
        last, left = mark
        if step < last:
            return True
        if step == last and left > 0:
            mark[1] -= 1
            return True
        del self._stored[key]  # past what the run held: log from now on
        return False

    def _release_held(self) -> list["Metric"]:
        """The held tensor values as metrics, converted together."""
        from mlflow.entities import Metric

        with self._lock:
            rows, self._held = self._held, []
        if not rows:
            return []
        values = _to_floats([v for _, v, _, _ in rows])
        return [Metric(k, v, ts, s) for (k, _, s, ts), v in zip(rows, values)]

    def _send(self, metrics: Sequence["Metric"]) -> None:
        """Hand ``metrics`` to MLflow's asynchronous logging, 1000 per ``log_batch``."""
        for chunk in _chunks(metrics, _MAX_METRICS_PER_BATCH):
            op = self.client.log_batch(self._run_id, metrics=chunk, synchronous=False)
            with self._lock:
                self._pending.append(op)
        if len(self._pending) >= _MAX_PENDING_OPS:
            self._wait()

    def _wait(self) -> None:
        """Wait for the asynchronous writes so far; raises if one failed."""
        with self._lock:
            ops, self._pending = self._pending, []
        for op in ops:
            if op is not None:
                op.wait()

    def flush(self) -> None:
        """Send held tensor values and wait until every metric logged so far is written."""
        self._send(self._release_held())
        self._wait()

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
            target = Path(tmp) / f"{store.safe_name(name)}_step{int(step):09d}.mp4"
            written = write_mp4(frames, target, fps=fps)
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


class NullTracker:
    """Stands in for a :class:`Tracker` on distributed ranks other than 0: logs nothing.

    Rank 0 owns the MLflow run; the other ranks only need its id (and the store, for the
    Lightning logger's client). Every method is a no-op."""

    client = None
    experiment_name = ""
    experiment_id = ""
    resumed = False
    ended = False

    def __init__(self, run_id: str = "", tracking_uri: str | None = None):
        self.run_id = run_id
        self._uri = tracking_uri

    @property
    def tracking_uri(self) -> str:
        """The store, resolved like :func:`~wmlab.tracking.tracking_uri`."""
        return store.tracking_uri(self._uri)

    def __enter__(self) -> "NullTracker":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        return False

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return lambda *args, **kwargs: None
