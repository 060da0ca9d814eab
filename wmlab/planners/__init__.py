from wmlab.planners.cem import CEM  # noqa: E402

__all__ += ["CEM"]
