"""TDM (Pong et al. 2018): temporal difference models, and the DDPG + HER baseline."""

from .config import TDMConfig
from .method import TDM, CountdownPolicy

__all__ = ["TDM", "TDMConfig", "CountdownPolicy"]
