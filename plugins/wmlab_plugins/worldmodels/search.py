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
    fitness (higher is better; ``cma`` minimises, so it is handed minus the fitness). The
    search starts at ``x0`` (zeros when not given) with step size ``sigma``."""

    def __init__(self, dim: int, *, population: int, sigma: float, x0: np.ndarray | None = None):
        if population < 2:
            raise ConfigError(f"method.population={population}: CMA-ES needs at least 2 "
                              f"candidates per generation (the paper: 64)")
        cma = _import_cma()
        start = np.zeros(dim) if x0 is None else np.asarray(x0, dtype=np.float64).reshape(dim)
        self.es = cma.CMAEvolutionStrategy(start, float(sigma), {
            "popsize": int(population), "verbose": -9,
            # samples come from numpy's global RNG, which the run seeds and checkpoints
            "seed": np.nan, "CMA_diagonal": False,
            # no mirrored samples (cma's default for populations under 6, never the paper's
            # 64): their bookkeeping is state that is not plain arrays
            "CMA_mirrors": 0})
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
    def _parts(self) -> dict[str, Any]:
        """The objects whose attributes make up the strategy's state."""
        es = self.es
        return {"es": es, "sm": es.sm, "sigma_adaptation": es.adapt_sigma, "sigma_vec": es.sigma_vec}

    def state(self) -> dict[str, Any]:
        """Every attribute of the strategy (and of its sampler and step-size adaptation) that
        is a number, a numeric array or a list of those: the mean, step size, covariance and
        its (lazily updated) eigensystem, evolution paths, counters and pending injected
        directions; plain values, so no pickle is needed."""
        return {name: {k: _copy(v) for k, v in vars(obj).items() if _numeric(v)}
                for name, obj in self._parts().items()}

    def load_state(self, state: dict[str, Any]) -> None:
        mean = np.asarray(state["es"]["mean"])
        if mean.shape != np.asarray(self.es.mean).shape:
            raise ConfigError(f"the checkpoint's controller search has {mean.size} parameters, "
                              f"this config's controller {np.asarray(self.es.mean).size}")
        for name, obj in self._parts().items():
            for k, v in state.get(name, {}).items():
                setattr(obj, k, _copy(v))
        es = self.es
        # (the strategy keeps its own references to the sampler's covariance and eigensystem)
        es.C, es.B, es.D = es.sm.C, es.sm.B, es.sm.D
        if es.countiter > 0 and not hasattr(es, "timer"):  # (cma starts it at the first ask)
            from cma.utilities import utils

            es.timer = utils.ElapsedWCTime()
        self._asked = None


def _numeric(value: Any) -> bool:
    if isinstance(value, (bool, int, float, np.integer, np.floating)):
        return True
    if isinstance(value, np.ndarray):
        return value.dtype.kind in "biuf"
    if type(value) is list:  # (not cma's list subclasses, which carry behaviour)
        return all((isinstance(v, np.ndarray) and v.dtype.kind in "biuf")
                   or isinstance(v, (bool, int, float)) for v in value)
    return False


def _copy(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.copy(order="K")  # (the memory order too: it sets how BLAS sums)
    if type(value) is list:
        return [v.copy(order="K") if isinstance(v, np.ndarray) else v for v in value]
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    return value
