"""Plan2Explore (Sekar et al. 2020): task-free exploration by ensemble disagreement, then
zero- (or few-) shot adaptation to the task reward; a subclass of the dreamer plugin."""

from .config import Plan2ExploreConfig
from .method import Plan2Explore

__all__ = ["Plan2Explore", "Plan2ExploreConfig"]
