"""Dreamer learns: cartpole-swingup from states passes an eval return of 200 in 24k env steps.

Why 200 means learning: at action repeat 8 a uniformly random policy gets 128 +- 67 per
1000-frame episode (30 episodes), a constant push 75 and doing nothing 0; 200 needs the pole
swung up and around repeatedly. With the preset below (small nets; configs/experiments/
dreamer-cartpole-swingup-small.yaml) three seeds on 2 CPU cores gave, at 4k, 8k, ... 32k
env steps:

    seed 1: 131  83 164 189 250 322 312 351
    seed 2:  75 102 189 193 168 200 200 220
    seed 3: 109  75 205 159 213 243 236 274

It takes about 5 minutes on 2 CPU cores (one thread; 3,750 updates at ~12 updates/s).

The check stops at 24k (2,750 updates) to fit CI's budget. With today's code, on one core
beside another run (8 min each), seed 1 gave 75, 146, 273 and seed 2 75, 220, 255 at 8k,
16k, 24k; the table above is of an earlier version of the method.

With ``RSSM.observe`` running the prior's head once over each sequence (the same values and
gradients: the expected world-model gradient over 300 draws each matched the step-by-step
verbs' to within Monte Carlo error; the draws come in another order), seeds 1-7 at 24k gave
208 213 204 200 191 211 326 (mean 222), and the code before it, run beside them on the same
seeds, 273 255 237 202 218 206 255 (mean 235). This check (seed 1): 75, 75, 208 in 4.5
minutes beside another run. The margin at 24k is thin for any seed; 200 is 1.56x a random
policy.
"""

import pytest
from learning_helpers import eval_curve, fit_cartpole

THRESHOLD = 200.0
RANDOM_POLICY = 128.0
STEPS = 24_000


@pytest.mark.slow
def test_dreamer_learns_cartpole_swingup():
    client, run = fit_cartpole("dreamer", "dreamer-cartpole-swingup-small",
                               f"run.steps={STEPS}", "eval.every=8000")
    curve = eval_curve(client, run)
    assert curve[-1][0] == STEPS
    assert curve[-1][1] > THRESHOLD > 1.5 * RANDOM_POLICY, curve
