"""Quiet libraries: the console is for wmlab's own progress and one-line errors."""

from __future__ import annotations

import logging
import warnings


def quiet_libraries() -> None:
    """Keep the console for wmlab's own progress: no per-run banners from the libraries.
    Imports none of them."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "torchrl", "absl", "alembic",
                 "mlflow"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("absl").setLevel(logging.ERROR)  # dm_control's deprecation chatter
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*IterableDataset.*has `__len__` defined.*")
    warnings.filterwarnings("ignore", ".*compiler attribute 'settotalmass'.*")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", ".*treespec, LeafSpec.*")
