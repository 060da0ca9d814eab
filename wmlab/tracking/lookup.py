"""Run names that are unique in their experiment, and finding runs by id or name.

A new run is named ``<method>-<env>-s<seed>-<4 hex digits>`` (``tdmpc-cheetah-run-s1-3fa2``),
drawn again until no run of the experiment has the name. A name given with ``run.name`` is
kept as it is if no run of the experiment has it yet, else it gets the same kind of suffix.
:func:`find_runs` returns every run a name or id matches, so that the CLI can refuse an
ambiguous ``--resume NAME`` and list the candidates instead of picking one.
"""

from __future__ import annotations

import secrets
import time
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

SUFFIX_HEX = 4


def _quoted(name: str) -> str:
    return "'" + name.replace("\\", "\\\\").replace("'", "\\'") + "'"


def name_taken(client: "MlflowClient", experiment_id: str, name: str) -> bool:
    from mlflow.entities import ViewType

    found = client.search_runs([experiment_id], filter_string=f"attributes.run_name = {_quoted(name)}",
                               run_view_type=ViewType.ALL, max_results=1)
    return bool(found)


def unique_run_name(client: "MlflowClient", experiment_id: str, requested: Optional[str],
                    default: str) -> str:
    """``requested`` if given and free in the experiment, else ``<requested or default>-<hex>``
    that no run of the experiment (deleted ones included) has."""
    if requested and not name_taken(client, experiment_id, requested):
        return requested
    base = requested or default
    for _ in range(64):
        name = f"{base}-{secrets.token_hex(SUFFIX_HEX // 2)}"
        if not name_taken(client, experiment_id, name):
            return name
    return f"{base}-{secrets.token_hex(8)}"  # (64 collisions of 4 hex digits: a crowded name)


def find_runs(client: "MlflowClient", ref: str) -> list["Run"]:
    """The active run whose id is ``ref``, else every active run named ``ref`` in any active
    experiment, newest first."""
    from mlflow.exceptions import MlflowException

    if len(ref) == 32 and all(c in "0123456789abcdef" for c in ref):
        try:
            run = client.get_run(ref)
            if run.info.lifecycle_stage == "active":
                return [run]
        except MlflowException:
            pass
    exp_ids = [e.experiment_id for e in client.search_experiments()]
    if not exp_ids:
        return []
    return list(client.search_runs(exp_ids, filter_string=f"attributes.run_name = {_quoted(ref)}",
                                   order_by=["attributes.start_time DESC"], max_results=100))


def describe(client: "MlflowClient", run: "Run") -> str:
    """One line: id, status, start, experiment, method, env and seed of ``run``."""
    info, tags = run.info, run.data.tags
    started = time.strftime("%Y-%m-%d %H:%M", time.localtime(info.start_time / 1000)) if info.start_time else "?"
    try:
        experiment = client.get_experiment(info.experiment_id).name
    except Exception:
        experiment = info.experiment_id
    what = " ".join(f"{k} {tags[f'wmlab.{k}']}" for k in ("method", "env", "seed") if f"wmlab.{k}" in tags)
    return f"{info.run_id}  {info.status:<8}  started {started}  experiment {experiment!r}  {what}".rstrip()
