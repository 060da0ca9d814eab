"""DreamerV2 learns: cartpole-swingup from states passes an eval return of 200 in 32k env steps.

Why 200 means learning: at action repeat 8 a uniformly random policy gets 123 +- 57 per
1000-frame episode (30 episodes, env seeds 0-29, through wmlab's dm_control env; max 222), a
constant push 75 (where a saturated tanh actor ends up) and doing nothing 0; the mean of 5
eval episodes above 200 needs the pole swung up repeatedly. With the preset (small nets,
8 x 8 categorical latents, Dreamer's model learning rate and action noise; configs/experiments/
dreamerv2-cartpole-swingup-small.yaml) three seeds on 2 shared CPU cores gave, at 4k, 8k, ...
32k env steps:

    seed 1: 146 123 167 193 192 251 323 340
    seed 2:  91  75  75  75 125 192 221 268
    seed 3:  75 152 131 165 201 220 240 249

Seed 2 spends 6k-17k env steps with its actor saturated into a constant push before it
recovers, hence the full 32k budget. This test itself (seed 1, evaluating every 8k) gave
122 142 273 344 at 8k, 16k, 24k, 32k, in 7.3 minutes of wall time on 2 CPU cores (one
thread; 3,750 updates at ~8.7 updates/s, about 1.4x the cost of a dreamer update).
"""

import pytest
from learning_helpers import eval_curve, fit_cartpole

THRESHOLD = 200.0
RANDOM_POLICY = 123.0
STEPS = 32_000


@pytest.mark.slow
def test_dreamerv2_learns_cartpole_swingup():
    client, run = fit_cartpole("dreamerv2", "dreamerv2-cartpole-swingup-small",
                               f"run.steps={STEPS}", "eval.every=8000")
    curve = eval_curve(client, run)
    assert curve[-1][0] == STEPS
    assert curve[-1][1] > THRESHOLD > 1.5 * RANDOM_POLICY, curve
