"""PlaNet (Hafner et al. 2019): an RSSM world model and CEM planning in latent space."""
