"""I2A (Weber, Racanière, Reichert et al. 2017): imagination-augmented agents, and the
paper's model-free and copy-model baselines (``method.agent``)."""

from .config import AGENTS, SIZES, I2AConfig
from .method import I2A, I2APolicy

__all__ = ["AGENTS", "I2A", "I2AConfig", "I2APolicy", "SIZES"]
