"""TD-MPC (Hansen et al. 2022): TOLD world model + MPPI planning with a terminal Q."""

from .config import TDMPCConfig
from .method import TDMPC, TDMPCPolicy

__all__ = ["TDMPC", "TDMPCConfig", "TDMPCPolicy"]
