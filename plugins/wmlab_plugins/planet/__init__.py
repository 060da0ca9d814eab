"""PlaNet (Hafner et al. 2019): an RSSM world model and CEM planning in latent space."""

from .config import PlaNetConfig
from .method import PlaNet

__all__ = ["PlaNet", "PlaNetConfig"]
