"""DreamerV2 (Hafner et al. 2021): Dreamer with categorical latents, KL balancing, a slow
critic and REINFORCE/dynamics actor gradients; a subclass of the dreamer plugin."""

from .config import DreamerV2Config
from .method import DreamerV2

__all__ = ["DreamerV2", "DreamerV2Config"]
