"""Does M's dream rank policies as the game does? A diagnostic for World Models on Doom.

A controller trained in the dream can only do well in the game if the dream rewards what the
game rewards. This script takes a ``worldmodels`` checkpoint on ``doom:take-cover`` whose M
is trained (any stage after ``mdn``) and scores the same fixed policies in both worlds:

* in M's dream (``--dreams`` rollouts each, at the run's ``temperature`` and ``dream_done``,
  or the ones given as overrides), survival in steps;
* in the real game (``--episodes`` episodes each, the eval env's seed), survival in frames;

then prints both side by side with Spearman's rank correlation across the policies. The
policies: a new uniformly random choice every frame, a random choice held for 1-10 frames
(the data policy of the Doom preset), standing still, always left, always right, swaying
(left and right in turn, 15 frames each), and the checkpoint's controller C (the search's
mean; in the dream with ``select_every``, the best-scoring one).

    python benchmarks/worldmodels_dream_ranking.py --checkpoint RUN_ID_OR_FOLDER
    python benchmarks/worldmodels_dream_ranking.py --checkpoint ... method.temperature=1.3

Extra ``key=value`` arguments override the checkpoint's config (dream settings only
matter). Doom at 160x120 runs at about 1,200 frames/s on one CPU core; 16 episodes of 7
policies take a minute or two.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable

import torch
import torch.nn.functional as F

#: Doom's choices (wmlab.envs.doom: 0 no-op, then each button alone)
STILL, LEFT, RIGHT = 0, 1, 2
EVAL_SEED = 1001


class FixedPolicy:
    """A policy that ignores what it sees: after ``reset(n)``, ``policy(t, generator)`` gives
    the choices ``[n]`` of ``n`` episodes at frame ``t``; ``choice`` and ``left`` ``[n]`` (the
    frames a held choice has to go) are its own state, updated by its rule."""

    def __init__(self, name: str, rule: Callable):
        self.name, self.rule = name, rule
        self.choice: torch.Tensor | None = None
        self.left: torch.Tensor | None = None

    def reset(self, n: int) -> None:
        self.choice, self.left = torch.zeros(n, dtype=torch.long), torch.zeros(n, dtype=torch.long)

    def __call__(self, t: int, g: torch.Generator) -> torch.Tensor:
        return self.rule(self, t, g)


def held_choice(p: FixedPolicy, g: torch.Generator, hold_max: int) -> torch.Tensor:
    """A uniformly random choice held for 1..``hold_max`` frames (drawn anew when it runs out)."""
    new = p.left <= 0
    p.choice = torch.where(new, torch.randint(3, p.choice.shape, generator=g), p.choice)
    p.left = torch.where(new, torch.randint(1, hold_max + 1, p.left.shape, generator=g), p.left) - 1
    return p.choice


def fixed_policies() -> list[FixedPolicy]:
    return [
        FixedPolicy("uniform", lambda p, t, g: held_choice(p, g, 1)),
        FixedPolicy("held 1-10", lambda p, t, g: held_choice(p, g, 10)),
        FixedPolicy("still", lambda p, t, g: torch.full_like(p.choice, STILL)),
        FixedPolicy("left", lambda p, t, g: torch.full_like(p.choice, LEFT)),
        FixedPolicy("right", lambda p, t, g: torch.full_like(p.choice, RIGHT)),
        FixedPolicy("sway 15", lambda p, t, g: torch.full_like(p.choice, LEFT if (t // 15) % 2 == 0 else RIGHT)),
    ]


def game_survival(policy: FixedPolicy, episodes: int, *, seed: int = EVAL_SEED) -> list[float]:
    """Frames survived in ``episodes`` episodes of take-cover (the 64x64 eval env's settings)."""
    from wmlab import keys
    from wmlab.config import env_config
    from wmlab.envs.doom import Doom

    cfg = env_config("doom:take-cover", obs="pixels", action_repeat=1, episode_steps=2100)
    env = Doom().make("take-cover", cfg, seed=seed)
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(episodes):
        td, total, t = env.reset(), 0.0, 0
        policy.reset(1)
        while True:
            choice = policy(t, g)[0]
            td[keys.ACTION] = F.one_hot(choice, 3).float()
            td = env.step(td)
            total += float(td[keys.REWARD])
            t += 1
            if bool(td[keys.DONE]):
                break
            td = td["next"]
        out.append(total)
    env.close()
    return out


def dream_survival(method, policy: FixedPolicy, dreams: int) -> list[float]:
    """Steps survived by ``dreams`` rollouts of M under ``policy``."""
    g = torch.Generator().manual_seed(0)
    policy.reset(dreams)
    t = [0]

    def choose(z, h):
        choice = policy(t[0], g)
        t[0] += 1
        return F.one_hot(choice, 3).float().to(z.device)

    return method.dream_survival(dreams, choose).tolist()


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rank correlation (average ranks for ties)."""
    def ranks(x):
        order = sorted(range(len(x)), key=lambda i: x[i])
        r = [0.0] * len(x)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and x[order[j + 1]] == x[order[i]]:
                j += 1
            for k in range(i, j + 1):
                r[order[k]] = (i + j) / 2
            i = j + 1
        return r

    ra, rb = ranks(a), ranks(b)
    ma, mb = statistics.mean(ra), statistics.mean(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    var = (sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb)) ** 0.5
    return cov / var if var else float("nan")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", required=True, help="a checkpoint folder or an MLflow run id/name")
    ap.add_argument("--episodes", type=int, default=16, help="real-game episodes per policy")
    ap.add_argument("--dreams", type=int, default=64, help="dream rollouts per policy")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args(argv)

    from wmlab import cli, loop
    from wmlab.evaluation import evaluate, seeded

    torch.set_num_threads(1)
    ckpt, state = cli._resume_source(args.checkpoint)
    if state["method"] != "worldmodels" or not str(state["env"]).startswith("doom:"):
        print(f"worldmodels_dream_ranking.py: {ckpt} is {state['method']} on {state['env']}; "
              f"valid: a worldmodels checkpoint on a doom: env", file=sys.stderr)
        return 2
    cls, plugin, cfg = cli._compose_from_checkpoint(state, argparse.Namespace(), args.overrides)
    run = loop.build(cfg, state["method"], method_cls=cls, plugin=plugin)
    loop.restore_weights(run, ckpt, state)
    method = run.method.eval()
    if int(method.rnn_trained) == 0:
        print(f"worldmodels_dream_ranking.py: {ckpt} holds no trained M (its mdn stage has not "
              f"run); valid: a checkpoint from the mdn stage on", file=sys.stderr)
        return 2
    m = cfg.method
    print(f"{ckpt}: M {m.rnn_hidden} units after {int(method.rnn_trained)} updates, z {m.z_dim}; "
          f"dream at temperature {m.temperature}, dream_done={m.dream_done}, at most {m.dream_steps} steps")
    print(f"{'policy':<12} {'dream (steps)':>16} {'game (frames)':>16}", flush=True)
    dream, game = [], []
    for policy in fixed_policies():
        d = dream_survival(method, policy, args.dreams)
        r = game_survival(policy, args.episodes)
        dream.append(statistics.mean(d))
        game.append(statistics.mean(r))
        print(f"{policy.name:<12} {dream[-1]:8.0f} +- {statistics.pstdev(d):4.0f} "
              f"{game[-1]:8.0f} +- {statistics.pstdev(r):4.0f}", flush=True)
    d = method.dream_returns(method.controller.expand(args.dreams, -1)).tolist()
    policy = loop.ready_policy(run, method.make_policy(explore=False))
    r = seeded(lambda: evaluate(run.eval_env, policy, episodes=args.episodes,
                                max_steps=run.specs.episode_policy_steps, seed=EVAL_SEED), 0).returns
    dream.append(statistics.mean(d))
    game.append(statistics.mean(r))
    print(f"{'controller':<12} {dream[-1]:8.0f} +- {statistics.pstdev(d):4.0f} "
          f"{game[-1]:8.0f} +- {statistics.pstdev(r):4.0f}")
    print(f"Spearman rank correlation, dream against game, over {len(dream)} policies: "
          f"{spearman(dream, game):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
