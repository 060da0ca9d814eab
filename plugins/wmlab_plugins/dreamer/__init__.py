"""Dreamer (Hafner et al. 2020): an RSSM world model and an actor-critic learned in imagination."""

from .config import DreamerConfig
from .method import Dreamer

__all__ = ["Dreamer", "DreamerConfig"]
