"""Network building blocks shared by every method (written once, reused)."""

from wmlab.nets.mlp import (
    ACTIVATIONS,
    activation,
    ema_update_,
    frozen,
    mlp,
    orthogonal_init_,
    preprocess_obs,
    set_requires_grad_,
    trunc_normal_init_,
    zero_init_last_,
)

__all__ = [
    "ACTIVATIONS",
    "activation",
    "ema_update_",
    "frozen",
    "mlp",
    "orthogonal_init_",
    "preprocess_obs",
    "set_requires_grad_",
    "trunc_normal_init_",
    "zero_init_last_",
]

# RSSM world-model pieces (PlaNet, Dreamer, DreamerV2, Plan2Explore)
from wmlab.nets.conv import ConvDecoder, ConvEncoder  # noqa: E402
from wmlab.nets.heads import (  # noqa: E402
    BernoulliHead,
    GaussianHead,
    OneHotActor,
    TruncNormalActor,
    TanhNormalActor,
    bernoulli_nll,
    gaussian_nll,
)
from wmlab.nets.rssm import (  # noqa: E402
    RSSM,
    CategoricalLatent,
    NormGRUCell,
    GaussianLatent,
    Imagination,
    RSSMState,
    imagine_from,
    make_latent,
)

__all__ += [
    "BernoulliHead", "CategoricalLatent", "ConvDecoder", "ConvEncoder", "GaussianHead",
    "GaussianLatent", "Imagination", "NormGRUCell", "OneHotActor", "RSSM", "RSSMState", "TanhNormalActor",
    "TruncNormalActor", "bernoulli_nll",
    "gaussian_nll", "imagine_from", "make_latent",
]
