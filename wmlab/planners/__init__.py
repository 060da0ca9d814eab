"""Planners shared by every method (MPPI here; CEM may join it)."""

from wmlab.planners.mppi import MPPI, PlanResult, ValueFn, warm_start

__all__ = ["MPPI", "PlanResult", "ValueFn", "warm_start"]

from wmlab.planners.cem import CEM  # noqa: E402

__all__ += ["CEM"]
