"""World Models (Ha & Schmidhuber 2018): a VAE, an MDN-RNN and a linear controller found
by CMA-ES, in the real env or in the MDN-RNN's dream (``method.train_in``)."""

from .config import WorldModelsConfig
from .method import ControllerPolicy, WorldModels

__all__ = ["ControllerPolicy", "WorldModels", "WorldModelsConfig"]
