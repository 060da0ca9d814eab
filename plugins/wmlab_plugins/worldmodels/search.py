"""CMA-ES over the controller's parameters (the ``cma`` package), with a state that
goes through wmlab's checkpoints as arrays (no pickle)."""

from __future__ import annotations

from typing import Any

import numpy as np

from wmlab.errors import ConfigError


def _import_cma():
    try:
        import cma
    except ImportError as e:
        raise ConfigError(f"worldmodels' controller search needs the cma package, which cannot "
                          f"be imported ({type(e).__name__}: {e}); install it: "
                          f"pip install \"cma>=4.5,<5\"") from e
    return cma


class CMAES:
    """CMA-ES maximising a fitness: :meth:`ask` candidates ``[K, P]``, :meth:`tell` their
    fitness (higher is better; ``cma`` minimises, so it is handed minus the fitness)."""

    def __init__(self, dim: int, *, population: int, sigma: float):
        if population < 2:
            raise ConfigError(f"method.population={population}: CMA-ES needs at least 2 "
                              f"candidates per generation (the paper: 64)")
        cma = _import_cma()
        self.es = cma.CMAEvolutionStrategy(np.zeros(dim), float(sigma), {
            "popsize": int(population), "verbose": -9,
            # samples come from numpy's global RNG, which the run seeds and checkpoints
            "seed": np.nan, "CMA_diagonal": False})
        self.population = int(population)
        self._asked: list[np.ndarray] | None = None

    def ask(self) -> np.ndarray:
        self._asked = self.es.ask()
        return np.stack(self._asked)

    def tell(self, fitness: np.ndarray) -> None:
        if self._asked is None:
            raise RuntimeError("tell() without ask()")
        self.es.tell(self._asked, [-float(f) for f in fitness])
        self._asked = None

    @property
    def mean(self) -> np.ndarray:
        """The distribution's mean (the candidate wmlab evaluates and acts with)."""
        return np.asarray(self.es.mean, dtype=np.float64)

    @property
    def sigma(self) -> float:
        return float(self.es.sigma)

    # --- checkpoints ----------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Everything a later generation depends on, as arrays and numbers."""
        es = self.es
        return {"mean": np.array(es.mean, dtype=np.float64), "sigma": float(es.sigma),
                "C": np.array(es.sm.C, dtype=np.float64), "pc": np.array(es.pc, dtype=np.float64),
                "ps": np.array(es.adapt_sigma.ps, dtype=np.float64),
                "scaling": np.array(es.sigma_vec.scaling, dtype=np.float64) * np.ones(len(es.mean)),
                "countiter": int(es.countiter), "countevals": int(es.countevals),
                "count_tell": int(es.sm.count_tell), "last_update": int(es.sm.last_update)}

    def load_state(self, state: dict[str, Any]) -> None:
        es = self.es
        mean = np.asarray(state["mean"], dtype=np.float64)
        if mean.shape != np.asarray(es.mean).shape:
            raise ConfigError(f"the checkpoint's controller search has {mean.size} parameters, "
                              f"this config's controller {np.asarray(es.mean).size}")
        es.mean = mean.copy()
        es.mean_after_tell = mean.copy()
        es.sigma = float(state["sigma"])
        es.sm.C = np.array(state["C"], dtype=np.float64)
        es.sm.count_tell = int(state["count_tell"])
        es.sm.last_update = int(state["last_update"])
        es.sm._decompose_C()
        es.pc = np.array(state["pc"], dtype=np.float64)
        es.adapt_sigma.ps = np.array(state["ps"], dtype=np.float64)
        es.sigma_vec.scaling = np.array(state["scaling"], dtype=np.float64)
        es.countiter = int(state["countiter"])
        es.countevals = int(state["countevals"])
        self._asked = None
