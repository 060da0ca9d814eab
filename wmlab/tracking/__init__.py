"""MLflow tracking: where runs are stored, one run per :class:`Tracker`, and a Lightning logger.

Store resolution (:func:`tracking_uri`): ``tracking.uri`` from the config, else
``$MLFLOW_TRACKING_URI``, else the local store ``./mlflow/``: an embedded SQLite database
``./mlflow/mlflow.db`` with artifacts under ``./mlflow/artifacts/<experiment>/<run id>/``
(no server needed; ``wmlab ui`` or :func:`ui` shows it). Any ``sqlite:///`` store keeps its
artifacts in an ``artifacts/`` folder next to the database file. :func:`find_run` looks a run
up by id or name.

A :class:`Tracker` owns one MLflow run through its own :class:`mlflow.MlflowClient` (never
the fluent, process-global API), so several runs and tests in one process stay independent.
A new run gets the resolved config (``config.yaml`` artifact and flattened params) and
``wmlab.*`` tags; ``Tracker.start(..., run_id=...)`` re-opens a run to resume it. The run ends
FINISHED, KILLED (Ctrl+C) or FAILED with the ``with`` block. Metrics go through MLflow's
asynchronous logging, one ``log_batch`` per call (tensor values are held on their device and
converted together, so logging never forces a host transfer per value); :meth:`Tracker.flush`
waits until they are written. Videos and files are run artifacts. The x-axis of every metric
is env steps, also for what Lightning logs (see :class:`MlflowEnvStepLogger`).
:class:`NullTracker` stands in on distributed ranks other than 0.

Modules: :mod:`~wmlab.tracking.store` (stores, clients, experiments, run lookup),
:mod:`~wmlab.tracking.run` (:class:`Tracker`, :class:`NullTracker`),
:mod:`~wmlab.tracking.logger` (the Lightning logger; imported on first use, so that
``wmlab ui`` does not import Lightning and torch), :mod:`~wmlab.tracking.server` (``ui``, ``server``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wmlab.tracking.run import TERMINAL_STATUSES, NullTracker, Tracker, git_revision
from wmlab.tracking.server import server, server_command, ui, ui_command
from wmlab.tracking.store import (
    ARTIFACTS_DIR,
    LOCAL_DB_NAME,
    LOCAL_STORE_DIR,
    artifact_root,
    client_for,
    experiment_id,
    find_run,
    local_store_uri,
    sqlite_path,
    tracking_uri,
)

if TYPE_CHECKING:
    from wmlab.tracking.logger import MlflowEnvStepLogger

__all__ = [
    "ARTIFACTS_DIR", "LOCAL_DB_NAME", "LOCAL_STORE_DIR", "TERMINAL_STATUSES",
    "MlflowEnvStepLogger", "NullTracker", "Tracker",
    "artifact_root", "client_for", "experiment_id", "find_run", "git_revision",
    "local_store_uri", "server", "server_command", "sqlite_path", "tracking_uri", "ui", "ui_command",
]


def __getattr__(name: str) -> Any:
    if name == "MlflowEnvStepLogger":
        from wmlab.tracking.logger import MlflowEnvStepLogger

        return MlflowEnvStepLogger
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
