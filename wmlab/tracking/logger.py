"""The Lightning logger: Lightning's own ``MLFlowLogger`` on a :class:`Tracker`'s run, with env
steps on the x-axis.

:class:`MlflowEnvStepLogger` subclasses :class:`lightning.pytorch.loggers.MLFlowLogger` and is
built on the tracker's run id, store and client, so ``trainer.logger.experiment`` is that
:class:`mlflow.MlflowClient`, ``run_id``/``version`` the run id and ``name`` the experiment id,
as with any ``MLFlowLogger``. It changes four things:

* ``log_metrics`` ignores Lightning's ``step`` (optimizer steps, several per update with
  manual optimization) and logs at ``step_fn()`` (the core passes
  ``lambda: progress.env_steps``). It writes through :meth:`Tracker.log_metrics` rather than
  Lightning's own ``log_batch`` call: Lightning drops the ``RunOperations`` that asynchronous
  ``log_batch`` returns, and an ``MlflowClient`` offers no public way to wait for writes it did
  not keep (short of ending the run), so :meth:`Tracker.flush` could not guarantee that these
  metrics are stored. Lightning's convenience ``epoch`` metric is dropped.
* ``experiment`` is the tracker's client, opened once, instead of a client that sets the
  process-wide MLflow tracking URI on first use.
* ``log_hyperparams`` does nothing: the tracker logged the whole resolved config as params
  when the run started, and MLflow forbids changing a param of a resumed run.
* ``finalize`` flushes but never ends the run: the CLI owns the run's lifetime.

Only rank 0 logs (Lightning's ``rank_zero_only``); other ranks pass a :class:`NullTracker`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional, Union

from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities.rank_zero import rank_zero_only

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from wmlab.tracking.run import NullTracker, Tracker


class MlflowEnvStepLogger(MLFlowLogger):
    """Lightning's ``MLFlowLogger`` writing to ``tracker``'s run at env step ``step_fn()``."""

    def __init__(self, tracker: Union["Tracker", "NullTracker"], step_fn: Callable[[], int]):
        super().__init__(experiment_name=tracker.experiment_name,
                         tracking_uri=tracker.tracking_uri, run_id=tracker.run_id,
                         synchronous=False)
        self._tracker = tracker
        self._step_fn = step_fn

    @property
    def tracker(self) -> Union["Tracker", "NullTracker"]:
        """The tracker that owns the run (e.g. ``trainer.logger.tracker.log_video(...)``)."""
        return self._tracker

    @property
    @rank_zero_experiment
    def experiment(self) -> "MlflowClient":
        """The tracker's :class:`mlflow.MlflowClient`."""
        return self._tracker.client

    @property
    def experiment_id(self) -> Optional[str]:
        """The MLflow experiment id of the run."""
        return self._tracker.experiment_id

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: Optional[int] = None) -> None:
        """Log ``metrics`` at env step ``step_fn()``; Lightning's ``step`` is ignored."""
        metrics = {k: v for k, v in metrics.items() if k != "epoch"}
        if metrics:
            self._tracker.log_metrics(metrics, step=int(self._step_fn()))

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """No-op: the tracker logged the resolved config as params when the run started."""

    @rank_zero_only
    def finalize(self, status: str = "success") -> None:
        """Wait until the logged metrics are written; the run stays open (the CLI ends it)."""
        if not self._tracker.ended:
            self._tracker.flush()
