"""Reversibility-aware RL (Grinsztajn et al. 2021, "There is no turning back"): a precedence
estimator of temporal order, RAE's reward penalty and RAC's action filter, over PPO or a
uniformly random base agent (``method.mode``, ``method.agent``)."""

from .config import AGENTS, MODES, ReversibilityConfig
from .method import Reversibility, ReversibilityPolicy

__all__ = ["AGENTS", "MODES", "Reversibility", "ReversibilityConfig", "ReversibilityPolicy"]
