"""DreamerV2 learns: cartpole-swingup from states passes an eval return of 200 in 24k env steps.

Why 200 means learning: at action repeat 8 a uniformly random policy gets 123 +- 57 per
1000-frame episode (30 episodes, env seeds 0-29, through wmlab's dm_control env; max 222), a
constant push 75 (where a saturated tanh actor ends up) and doing nothing 0; the mean of 5
eval episodes above 200 needs the pole swung up repeatedly. With the preset (small nets,
8 x 8 categorical latents, Dreamer's model learning rate, the authors' truncated-Normal actor,
layer-normalised GRU and zero action noise; configs/experiments/dreamerv2-cartpole-swingup-small.yaml)
two seeds on 2 CPU cores shared with other jobs gave, at 4k, 8k, ... 32k env steps (5 episodes):

    seed 1: 143 161 204 244 308 353 362 335
    seed 2:  75 183 131 196 213 192 227 249

This test (seed 1, evaluating every 8k) gave 184 222 314 at 8k, 16k, 24k in 10.4 minutes of
wall time on one core (it ran to 32k before, 977 s in a CI run of the whole suite; seed 1
passes 200 from 12k on, so 24k keeps a wide margin and saves a quarter of the time).

With ``RSSM.observe`` running the prior's head once over each sequence (the same values and
gradients, drawn in another order), this test gave 219 318 413 in 5.8 minutes beside another run.

Before the actor, cell and activations were the authors' (Dreamer's tanh-Normal actor, which
needed Dreamer's action noise of 0.3 to stay out of saturation), seed 2 spent 6k-17k env steps
in a constant push (75) and this test (seed 1, evaluating every 8k) gave 122 142 273 344 in
7.3 minutes of wall time on 2 CPU cores (one thread; 3,750 updates at ~8.7 updates/s).
"""

import pytest
from learning_helpers import eval_curve, fit_cartpole

THRESHOLD = 200.0
RANDOM_POLICY = 123.0
STEPS = 24_000


@pytest.mark.slow
def test_dreamerv2_learns_cartpole_swingup():
    client, run = fit_cartpole("dreamerv2", "dreamerv2-cartpole-swingup-small",
                               f"run.steps={STEPS}", "eval.every=8000")
    curve = eval_curve(client, run)
    assert curve[-1][0] == STEPS
    assert curve[-1][1] > THRESHOLD > 1.5 * RANDOM_POLICY, curve
