"""``wmlab compare``: methods and seeds compared the way RL papers report them.

Runs are chosen from the store by sweep, experiment, method, env and tags (no selection:
every finished training run of the store; sweeps' own runs, evaluations and comparisons
are never chosen). From each run's ``eval/episode_return`` (the mean over the eval
episodes, against env steps) the comparison makes:

* per env, the return against env steps of each method: the mean over seeds and a 95%
  bootstrap band of that mean (seeds resampled with replacement; curves of one method are
  put on the env steps all its seeds evaluated at, interpolated linearly where their eval
  steps differ, up to the shortest run) -> ``curves.png``;
* a run's score is its last eval return. Scores are normalised per env (``--normalize``):
  ``minmax`` (default) maps the lowest score of any compared run on that env to 0 and the
  highest to 1, so a normalised score says where a run lies among the runs compared, not
  against an outside reference; a YAML file ``{env: {min: ..., max: ...}}`` gives the
  references instead (e.g. a random policy's return and the best known return); ``none``
  keeps raw returns (for envs on one scale, such as dm_control's 0-1000).
* across envs, with the ``rliable`` package (Agarwal et al. 2021): the IQM, median and mean
  of the normalised scores with 95% stratified bootstrap confidence intervals (runs
  resampled within each env), and for every two methods the probability that a run of the
  first beats one of the second (averaged over envs, Mann-Whitney), with its bootstrap
  interval -> ``aggregates.png``, ``improvement.png``.

Everything goes into the folder ``--out`` (also ``comparison.md``, a markdown table, and
``scores.csv``, one line per run) and is logged as the artifacts of a comparison run
(tag ``wmlab.kind=compare``; nested under the sweep's run for ``--sweep``).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import numpy as np

from wmlab.errors import ConfigError, WmlabError

if TYPE_CHECKING:
    from mlflow import MlflowClient

METRIC = "eval/episode_return"
CONFIDENCE = 0.95


@dataclass
class Selection:
    """Which runs to compare; empty fields select everything."""

    sweep: Optional[str] = None
    experiment: Optional[str] = None
    methods: list[str] = field(default_factory=list)
    envs: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        parts = [f"sweep {self.sweep}" if self.sweep else "", f"experiment {self.experiment}" if self.experiment else "",
                 f"methods {','.join(self.methods)}" if self.methods else "",
                 f"envs {','.join(self.envs)}" if self.envs else "",
                 " ".join(f"tag {k}={v}" for k, v in self.tags.items())]
        return "; ".join(p for p in parts if p) or "every run of the store"


@dataclass
class RunCurve:
    """One run's eval returns against env steps."""

    run_id: str
    name: str
    method: str
    env: str
    seed: str
    steps: np.ndarray  # [T] env steps, increasing
    values: np.ndarray  # [T]

    @property
    def score(self) -> float:
        return float(self.values[-1])


def _quoted(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _filter(sel: Selection) -> str:
    from wmlab.tracking.run import SWEEP_TAG

    terms = ["attributes.status = 'FINISHED'"]
    if sel.sweep:
        terms.append(f"tags.`{SWEEP_TAG}` = {_quoted(sel.sweep)}")
    for key, value in sel.tags.items():
        terms.append(f"tags.`{key}` = {_quoted(value)}")
    if len(sel.methods) == 1:
        terms.append(f"tags.`wmlab.method` = {_quoted(sel.methods[0])}")
    if len(sel.envs) == 1:
        terms.append(f"tags.`wmlab.env` = {_quoted(sel.envs[0])}")
    return " and ".join(terms)


def _experiments(client: "MlflowClient", sel: Selection) -> list[str]:
    if sel.experiment:
        exp = client.get_experiment_by_name(sel.experiment)
        if exp is None or exp.lifecycle_stage != "active":
            raise WmlabError(f"no MLflow experiment {sel.experiment!r} in {client.tracking_uri}")
        return [exp.experiment_id]
    return [e.experiment_id for e in client.search_experiments()]


def select_runs(client: "MlflowClient", sel: Selection) -> list:
    """The finished training runs ``sel`` chooses (no sweep, eval or comparison runs)."""
    from wmlab.tracking.run import KIND_TAG

    exp_ids = _experiments(client, sel)
    runs, token = [], None
    for start in range(0, len(exp_ids), 100):
        while True:
            page = client.search_runs(exp_ids[start:start + 100], _filter(sel), max_results=1000,
                                      page_token=token)
            runs.extend(page)
            token = page.token
            if not token:
                break
    chosen = []
    for run in runs:
        tags = run.data.tags
        if KIND_TAG in tags or "wmlab.evaluates" in tags or "wmlab.method" not in tags:
            continue
        if sel.methods and tags["wmlab.method"] not in sel.methods:
            continue
        if sel.envs and tags.get("wmlab.env") not in sel.envs:
            continue
        chosen.append(run)
    return sorted(chosen, key=lambda r: (r.data.tags.get("wmlab.env", ""), r.data.tags["wmlab.method"],
                                         r.data.tags.get("wmlab.seed", ""), r.info.start_time or 0))


def _held(client: "MlflowClient", sel: Selection) -> str:
    """What the store (or ``sel``'s experiment) holds, for an error about ``sel`` matching
    nothing: ``; there: methods a, b; envs c; sweeps s``."""
    from wmlab.tracking.run import SWEEP_TAG

    runs = select_runs(client, Selection(experiment=sel.experiment))
    if not runs:
        return "; it has no finished training run yet (`wmlab fit` makes them)"
    parts = []
    for title, tag in (("methods", "wmlab.method"), ("envs", "wmlab.env"), ("sweeps", SWEEP_TAG)):
        values = sorted({r.data.tags[tag] for r in runs if r.data.tags.get(tag)})
        if values or (tag == SWEEP_TAG and sel.sweep):
            parts.append(f"{title} {', '.join(values) or '(none)'}")
    return f"; there: {'; '.join(parts)}"


def read_curves(client: "MlflowClient", runs: list, out=None) -> list[RunCurve]:
    """Each run's ``eval/episode_return`` history (one value per env step: the last logged)."""
    out = out or sys.stderr
    curves, missing = [], []
    for i, run in enumerate(runs, 1):
        history = client.get_metric_history(run.info.run_id, METRIC)
        by_step: dict[int, tuple[int, float]] = {}
        for m in history:
            if m.step not in by_step or m.timestamp >= by_step[m.step][0]:
                by_step[m.step] = (m.timestamp, m.value)
        tags = run.data.tags
        if not by_step:
            missing.append(run.info.run_name or run.info.run_id)
        else:
            steps = np.array(sorted(by_step), dtype=np.int64)
            values = np.array([by_step[s][1] for s in steps], dtype=np.float64)
            curves.append(RunCurve(run.info.run_id, run.info.run_name, tags["wmlab.method"],
                                   tags.get("wmlab.env", "?"), tags.get("wmlab.seed", "?"), steps, values))
        if i == len(runs) or i % 10 == 0:
            print(f"compare: read {i}/{len(runs)} runs", file=out, flush=True)
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise WmlabError(f"{len(missing)} of the {len(runs)} selected runs logged no {METRIC} "
                         f"(eval.every=0 and eval.final=false?): {shown}; leave them out with "
                         f"--method/--env/--tag")
    return curves


# --- statistics ------------------------------------------------------------------------------


def bootstrap_band(curves: np.ndarray, reps: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """95% percentile bootstrap interval of the mean over seeds at each step; ``curves``
    ``[seeds, T]``. One seed gives a band of zero width."""
    n = curves.shape[0]
    idx = rng.integers(0, n, size=(reps, n))  # [reps, seeds]
    means = curves[idx].mean(axis=1)  # [reps, T]
    lo, hi = np.percentile(means, [50 * (1 - CONFIDENCE), 50 * (1 + CONFIDENCE)], axis=0)
    return lo, hi


def common_grid(runs: list[RunCurve]) -> tuple[np.ndarray, np.ndarray]:
    """Env steps every run of ``runs`` reaches (the union of their eval steps up to the
    shortest run) and the runs' returns there ``[runs, T]``, linearly interpolated."""
    end = min(r.steps[-1] for r in runs)
    start = max(r.steps[0] for r in runs)
    grid = np.unique(np.concatenate([r.steps for r in runs]))
    grid = grid[(grid >= start) & (grid <= end)]
    if grid.size == 0:
        grid = np.array([end])
    return grid, np.stack([np.interp(grid, r.steps, r.values) for r in runs])


def normalisers(curves: list[RunCurve], how: str) -> dict[str, tuple[float, float]]:
    """``{env: (low, high)}``: a score ``x`` is normalised to ``(x - low) / (high - low)``."""
    envs = sorted({c.env for c in curves})
    if how == "none":
        return {env: (0.0, 1.0) for env in envs}
    if how == "minmax":
        out = {}
        for env in envs:
            scores = [c.score for c in curves if c.env == env]
            out[env] = (min(scores), max(scores))
        return out
    path = Path(how)
    if not path.is_file():
        raise ConfigError(f"--normalize takes minmax, none or a YAML file of per-env scores; {how!r} is none of them")
    import yaml

    try:
        given = yaml.safe_load(path.read_text()) or {}
        out = {str(env): (float(v["min"]), float(v["max"])) for env, v in given.items()}
    except (yaml.YAMLError, TypeError, KeyError, ValueError, AttributeError) as e:
        raise ConfigError(f"--normalize {path}: expected 'ENV: {{min: LOW, max: HIGH}}' per env ({e})") from None
    lacking = [env for env in envs if env not in out]
    if lacking:
        raise ConfigError(f"--normalize {path} gives no scores for {', '.join(lacking)}")
    return out


def normalise(score: float, bounds: tuple[float, float]) -> float:
    low, high = bounds
    return 0.0 if high == low else (score - low) / (high - low)


def score_matrices(curves: list[RunCurve], bounds: dict[str, tuple[float, float]]):
    """``{method: [runs, envs]}`` of normalised scores over the envs every method ran on, the
    envs, and notes on what had to be left out (rliable needs one run count per method)."""
    methods = sorted({c.method for c in curves})
    envs = sorted(set.intersection(*[{c.env for c in curves if c.method == m} for m in methods]))
    notes = []
    left_out = sorted({c.env for c in curves} - set(envs))
    if left_out:
        notes.append(f"envs not run by every method are left out of the aggregates: {', '.join(left_out)}")
    matrices = {}
    for m in methods:
        per_env = {e: sorted((c for c in curves if c.method == m and c.env == e), key=lambda c: c.seed) for e in envs}
        n = min((len(v) for v in per_env.values()), default=0)
        if any(len(v) > n for v in per_env.values()):
            notes.append(f"{m}: {n} runs per env used (the fewest any env has)")
        matrices[m] = np.array([[normalise(per_env[e][i].score, bounds[e]) for e in envs] for i in range(n)])
    return matrices, envs, notes


@dataclass
class Aggregates:
    names: tuple = ("IQM", "Median", "Mean")
    points: dict = field(default_factory=dict)  # method -> [3]
    cis: dict = field(default_factory=dict)  # method -> [2, 3]
    poi: dict = field(default_factory=dict)  # "X,Y" -> P(X > Y)
    poi_cis: dict = field(default_factory=dict)  # "X,Y" -> [2]


def aggregate(matrices: dict[str, np.ndarray], reps: int, seed: int, out=None) -> Aggregates:
    """IQM, median, mean with stratified bootstrap CIs, and the probability of improvement
    of every ordered pair of methods, by ``rliable``."""
    import warnings

    out = out or sys.stderr
    with warnings.catch_warnings():  # arch's note that RandomState is deprecated
        warnings.simplefilter("ignore", FutureWarning)
        return _aggregate(matrices, reps, seed, out)


def _aggregate(matrices: dict[str, np.ndarray], reps: int, seed: int, out) -> Aggregates:
    from rliable import library as rly
    from rliable import metrics

    def funcs(x):
        return np.array([metrics.aggregate_iqm(x), metrics.aggregate_median(x), metrics.aggregate_mean(x)])

    agg = Aggregates()
    print(f"compare: bootstrapping IQM, median and mean over {len(matrices)} methods ({reps} samples)",
          file=out, flush=True)
    agg.points, agg.cis = rly.get_interval_estimates(matrices, funcs, reps=reps,
                                                     confidence_interval_size=CONFIDENCE,
                                                     random_state=np.random.RandomState(seed))
    methods = list(matrices)
    pairs = {f"{x},{y}": (matrices[x], matrices[y]) for x in methods for y in methods if x != y}
    if pairs:
        print(f"compare: bootstrapping the probability of improvement of {len(pairs)} pairs", file=out, flush=True)
        points, cis = rly.get_interval_estimates(pairs, metrics.probability_of_improvement,
                                                 reps=reps, confidence_interval_size=CONFIDENCE,
                                                 random_state=np.random.RandomState(seed + 1))
        agg.poi = {k: float(np.ravel(v)[0]) for k, v in points.items()}
        agg.poi_cis = {k: np.ravel(v) for k, v in cis.items()}
    return agg


# --- outputs --------------------------------------------------------------------------------


def plot_curves(curves: list[RunCurve], path: Path, reps: int, seed: int) -> dict:
    """One panel per env: mean eval return of each method over its seeds with a 95% bootstrap
    band. Returns ``{(env, method): (grid, mean, lo, hi, seeds)}``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(seed)
    envs = sorted({c.env for c in curves})
    methods = sorted({c.method for c in curves})
    cols = min(3, len(envs))
    rows = math.ceil(len(envs) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    colors = {m: plt.cm.tab10(i % 10) for i, m in enumerate(methods)}
    bands = {}
    for ax, env in zip(axes.flat, envs):
        for m in methods:
            runs = [c for c in curves if c.env == env and c.method == m]
            if not runs:
                continue
            grid, values = common_grid(runs)
            mean = values.mean(axis=0)
            lo, hi = bootstrap_band(values, reps, rng)
            bands[(env, m)] = (grid, mean, lo, hi, len(runs))
            ax.plot(grid, mean, color=colors[m], label=f"{m} ({len(runs)} seeds)")
            ax.fill_between(grid, lo, hi, color=colors[m], alpha=0.25, linewidth=0)
        ax.set_title(env)
        ax.set_xlabel("env steps")
        ax.set_ylabel("eval return")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(envs):]:
        ax.axis("off")
    fig.suptitle(f"eval return: mean over seeds, {int(CONFIDENCE * 100)}% bootstrap band")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return bands


def plot_aggregates(agg: Aggregates, path: Path, xlabel: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(agg.points)
    fig, axes = plt.subplots(1, len(agg.names), figsize=(3.6 * len(agg.names), 0.6 * len(methods) + 1.6),
                             squeeze=False)
    for j, (ax, name) in enumerate(zip(axes[0], agg.names)):
        for i, m in enumerate(methods):
            lo, hi = agg.cis[m][0][j], agg.cis[m][1][j]
            ax.barh(i, hi - lo, left=lo, height=0.6, color=plt.cm.tab10(i % 10), alpha=0.75)
            ax.plot([agg.points[m][j]] * 2, [i - 0.3, i + 0.3], color="black", linewidth=1.5)
        ax.set_yticks(range(len(methods)), methods if j == 0 else [""] * len(methods))
        ax.set_title(name)
        ax.grid(axis="x", alpha=0.3)
    fig.supxlabel(xlabel)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_improvement(agg: Aggregates, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = list(agg.poi)
    fig, ax = plt.subplots(figsize=(6, 0.5 * len(pairs) + 1.4))
    for i, pair in enumerate(pairs):
        lo, hi = agg.poi_cis[pair][0], agg.poi_cis[pair][1]
        ax.barh(i, hi - lo, left=lo, height=0.6, color="tab:blue", alpha=0.6)
        ax.plot([agg.poi[pair]] * 2, [i - 0.3, i + 0.3], color="black", linewidth=1.5)
    ax.set_yticks(range(len(pairs)), [" > ".join(p.split(",")) for p in pairs])
    ax.axvline(0.5, color="gray", linestyle="--", linewidth=1)
    ax.set_xlim(0, 1)
    ax.set_xlabel("P(a run of X beats a run of Y), averaged over envs")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _f(x: float) -> str:
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:.0f}"


def markdown(sel: Selection, curves: list[RunCurve], bands: dict, bounds: dict, how: str,
             agg: Optional[Aggregates], envs: list[str], notes: list[str], reps: int) -> str:
    lines = [f"# Comparison: {sel.describe()}", "",
             f"{len(curves)} finished runs; score of a run: its last `{METRIC}`. Bands and intervals: "
             f"{int(CONFIDENCE * 100)}% percentile bootstrap, {reps} samples.", "",
             "## Per env (return at the last env step every seed reached)", "",
             "| env | method | seeds | env steps | mean return | 95% CI |", "|---|---|---|---|---|---|"]
    for (env, m), (grid, mean, lo, hi, n) in sorted(bands.items()):
        lines.append(f"| {env} | {m} | {n} | {int(grid[-1])} | {_f(mean[-1])} | [{_f(lo[-1])}, {_f(hi[-1])}] |")
    norm = {"minmax": "per env, the lowest score of the compared runs is 0 and the highest 1 (relative to "
                      "these runs only)",
            "none": "none (raw returns)"}.get(how, f"per env, from {how}: (score - min) / (max - min)")
    lines += ["", f"Normalisation: {norm}.", ""]
    lines += ["| env | min | max |", "|---|---|---|"] + [f"| {e} | {_f(b[0])} | {_f(b[1])} |" for e, b in sorted(bounds.items())]
    if agg is not None:
        lines += ["", f"## Across envs ({', '.join(envs)}), normalised scores, stratified bootstrap (rliable)", "",
                  "| method | runs | " + " | ".join(agg.names) + " |", "|---|---|" + "---|" * len(agg.names)]
        for m, point in agg.points.items():
            cells = [f"{_f(point[j])} [{_f(agg.cis[m][0][j])}, {_f(agg.cis[m][1][j])}]" for j in range(len(agg.names))]
            runs = sum(1 for c in curves if c.method == m and c.env in envs)
            lines.append(f"| {m} | {runs} | " + " | ".join(cells) + " |")
        if agg.poi:
            lines += ["", "## Probability of improvement", "", "| X | Y | P(X > Y) | 95% CI |", "|---|---|---|---|"]
            for pair, p in agg.poi.items():
                x, y = pair.split(",")
                lines.append(f"| {x} | {y} | {_f(p)} | [{_f(agg.poi_cis[pair][0])}, {_f(agg.poi_cis[pair][1])}] |")
    if notes:
        lines += ["", "Notes:", ""] + [f"* {n}" for n in notes]
    lines += ["", "## Runs", "", "| env | method | seed | run | env steps | score |", "|---|---|---|---|---|---|"]
    for c in curves:
        lines.append(f"| {c.env} | {c.method} | {c.seed} | {c.name} | {int(c.steps[-1])} | {_f(c.score)} |")
    return "\n".join(lines) + "\n"


def write_scores(curves: list[RunCurve], bounds: dict, path: Path) -> None:
    import csv

    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["env", "method", "seed", "run_id", "run_name", "env_steps", "score", "normalised"])
        for c in curves:
            w.writerow([c.env, c.method, c.seed, c.run_id, c.name, int(c.steps[-1]), c.score,
                        normalise(c.score, bounds[c.env])])


# --- the command ------------------------------------------------------------------------------


def log_comparison(client: "MlflowClient", sel: Selection, folder: Path, agg: Optional[Aggregates],
                   curves: list[RunCurve], params: dict) -> str:
    """A comparison run holding the outputs as artifacts; returns a line saying where."""
    from mlflow.entities import Metric, Param

    from wmlab.tracking import experiment_id
    from wmlab.tracking.lookup import unique_run_name
    from wmlab.tracking.run import KIND_TAG, SWEEP_TAG

    parent = None
    if sel.sweep:
        from wmlab.sweep import find_parent

        parent = find_parent(client, sel.sweep)
    if parent is not None:
        exp_id = parent.info.experiment_id
    elif sel.experiment:
        exp_id = experiment_id(client, sel.experiment)
    else:  # the experiment of the first run compared
        exp_id = client.get_run(curves[0].run_id).info.experiment_id
    tags = {KIND_TAG: "compare", "mlflow.source.name": "wmlab compare", "mlflow.source.type": "LOCAL",
            "wmlab.compare_selection": sel.describe()[:5000]}
    if parent is not None:
        tags |= {"mlflow.parentRunId": parent.info.run_id, SWEEP_TAG: sel.sweep}
    name = unique_run_name(client, exp_id, None, "compare")
    run = client.create_run(exp_id, run_name=name, tags=tags)
    run_id = run.info.run_id
    metrics = []
    if agg is not None:
        for m, point in agg.points.items():
            for j, stat in enumerate(agg.names):
                metrics.append(Metric(f"compare/{m}/{stat.lower()}", float(point[j]), 0, 0))
    client.log_batch(run_id, metrics=metrics, params=[Param(k, str(v)[:6000]) for k, v in params.items()])
    client.log_artifacts(run_id, str(folder))
    client.set_terminated(run_id, "FINISHED")
    where = f"nested under sweep {sel.sweep}" if parent is not None else f"experiment {exp_id}"
    return f"mlflow: comparison run {run_id} ({name}, {where})"


def run_compare(args, out=None) -> int:
    out = out or sys.stderr
    from wmlab import preflight
    from wmlab.sweep import split_list
    from wmlab.tracking import client_for

    if args.reps < 100:
        raise ConfigError(f"--reps must be at least 100, got {args.reps}")
    if args.seed < 0:
        raise ConfigError(f"--seed must be >= 0 (a numpy seed), got {args.seed}")
    tags = {}
    for item in args.tag:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--tag takes KEY=VALUE, got {item!r}")
        tags[key] = value
    sel = Selection(sweep=args.sweep, experiment=args.experiment,
                    methods=split_list(args.method, "--method") if args.method else [],
                    envs=split_list(args.env, "--env") if args.env else [], tags=tags)
    if args.normalize not in ("minmax", "none") and not Path(args.normalize).is_file():
        raise ConfigError(f"--normalize takes minmax, none or a YAML file of per-env scores; "
                          f"{args.normalize!r} is none of them")
    uri, where = preflight.existing_store()
    if uri is None:
        raise WmlabError(f"there is no MLflow store at {where} yet, so no run to compare (`wmlab fit` "
                         f"makes runs there; MLFLOW_TRACKING_URI names another store)")
    client = client_for(uri)
    print(f"compare: selecting runs ({sel.describe()}) in {uri}", file=out, flush=True)
    runs = select_runs(client, sel)
    if not runs:
        raise WmlabError(f"no finished training run matches {sel.describe()} in {uri}{_held(client, sel)}")
    curves = read_curves(client, runs, out=out)
    folder = Path(args.out)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WmlabError(f"cannot write to --out {folder}: {e.strerror or e}") from None
    bounds = normalisers(curves, args.normalize)
    print(f"compare: {len(curves)} runs, {len({c.method for c in curves})} methods, "
          f"{len({c.env for c in curves})} envs; bootstrapping curve bands ({args.reps} samples)", file=out, flush=True)
    bands = plot_curves(curves, folder / "curves.png", args.reps, args.seed)
    matrices, envs, notes = score_matrices(curves, bounds)
    agg = None
    if envs and all(m.shape[0] > 0 for m in matrices.values()):
        agg = aggregate(matrices, args.reps, args.seed, out=out)
        xlabel = "normalised score" if args.normalize != "none" else "return"
        plot_aggregates(agg, folder / "aggregates.png", xlabel)
        if agg.poi:
            plot_improvement(agg, folder / "improvement.png")
    else:
        notes.append("no env was run by every method: no aggregates across envs")
    text = markdown(sel, curves, bands, bounds, args.normalize, agg, envs, notes, args.reps)
    (folder / "comparison.md").write_text(text)
    write_scores(curves, bounds, folder / "scores.csv")
    print(text, end="")
    written = sorted(p.name for p in folder.iterdir() if p.name in
                     ("curves.png", "aggregates.png", "improvement.png", "comparison.md", "scores.csv"))
    print(f"compare: wrote {', '.join(written)} to {folder}", file=out)
    if not args.no_mlflow:
        params = {"selection": sel.describe(), "normalize": args.normalize, "reps": args.reps,
                  "runs": len(curves), "metric": METRIC}
        print(log_comparison(client, sel, folder, agg, curves, params))
    return 0
