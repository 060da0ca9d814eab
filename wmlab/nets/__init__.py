# RSSM world-model pieces (PlaNet, Dreamer, DreamerV2, Plan2Explore)
from wmlab.nets.conv import ConvDecoder, ConvEncoder  # noqa: E402
from wmlab.nets.heads import BernoulliHead, GaussianHead, TanhNormalActor, bernoulli_nll, gaussian_nll  # noqa: E402
from wmlab.nets.rssm import (  # noqa: E402
    RSSM,
    CategoricalLatent,
    GaussianLatent,
    Imagination,
    RSSMState,
    imagine_from,
    make_latent,
)

__all__ += [
    "BernoulliHead", "CategoricalLatent", "ConvDecoder", "ConvEncoder", "GaussianHead",
    "GaussianLatent", "Imagination", "RSSM", "RSSMState", "TanhNormalActor", "bernoulli_nll",
    "gaussian_nll", "imagine_from", "make_latent",
]
