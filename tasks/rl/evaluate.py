"""RL's evaluation: how often a policy solves held-out problems, first try and in k tries.

The samples come from the rollout task itself (`Sampling.of(config, evaluation=True)`):
per held-out problem the greedy reply (sample -1) and n samples at the training
temperature, drawn from the same seeds at every evaluation, so two evaluations differ by
the policy, not by the draw. From them:

- pass@1 (greedy): the greedy reply is right, strict and lenient;
- pass@k: the unbiased estimator of Chen et al. 2021 (Codex) over the n samples,
  1 - C(n - c, k) / C(n, k) for c right ones, k = 1, 2, 4, ... up to n;
- mean reward (the samples' strict and lenient rewards) and mean length in tokens;
- the problems solved greedily, by id: the before/after table counts the ones RL gained and
  lost (the same problems are asked each time, so a change is read pair by pair), beside
  pass@1's 95% interval;

over all held-out problems and per kind of hold-out: `seed` (families RL trains on, new
numbers and wording), `family` (mathgen's held-out families: structures no training set
draws from, what RL is judged on), `id` (users' held-out rows).
"""

from __future__ import annotations

from collections import defaultdict
from functools import partial
from math import comb
from typing import Any

from tasks.evaluate import shown

GROUPS = ("all", "seed", "family", "id")


def headline(metrics: dict[str, dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """The group a run is judged on: the held-out families where there are any, else all."""
    group = "family" if "family" in metrics else "all"
    return group, metrics[group]


def pass_at_k(n: int, c: int, k: int) -> float:
    """The probability that at least one of k samples drawn without replacement from n, of
    which c are right, is right."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n; got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def ks(n: int) -> list[int]:
    """1, 2, 4, ... up to n, and n itself."""
    out = [k for k in (2**i for i in range(n.bit_length())) if k <= n]
    return out + ([n] if out[-1] != n else [])


def metrics(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The evaluation's numbers per hold-out group (absent groups are left out)."""
    by_problem: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_problem[r["prompt_id"]].append(r)
    grouped: dict[str, list[list[dict[str, Any]]]] = defaultdict(list)
    for problem in by_problem.values():
        grouped["all"].append(problem)
        grouped[problem[0]["holdout"] or "seed"].append(problem)
    return {g: _numbers(grouped[g]) for g in GROUPS if grouped.get(g)}


def _numbers(problems: list[list[dict[str, Any]]]) -> dict[str, Any]:
    greedy = [next(r for r in p if r["sample"] == -1) for p in problems]
    drawn = [[r for r in p if r["sample"] >= 0] for p in problems]
    n = min(len(d) for d in drawn)
    mean = lambda xs: round(sum(xs) / len(xs), 4) if xs else None  # noqa: E731
    out: dict[str, Any] = {
        "problems": len(problems),
        "pass1_greedy": mean([r["reward_strict"] for r in greedy]),
        "pass1_greedy_lenient": mean([r["reward_lenient"] for r in greedy]),
        "reward": mean([r["reward_strict"] for d in drawn for r in d]),
        "reward_lenient": mean([r["reward_lenient"] for d in drawn for r in d]),
        "length": mean([r["length"] for d in drawn for r in d]),
        "length_greedy": mean([r["length"] for r in greedy]),
        "solved_greedy": sorted(r["prompt_id"] for r in greedy if r["reward_strict"] >= 1),
    }
    if n:
        for k in ks(n):
            out[f"pass@{k}"] = mean([pass_at_k(n, int(sum(r["reward_strict"] >= 1 for r in d[:n])), k) for d in drawn])
    return out


LABELS = {
    "pass1_greedy": "pass@1, greedy (strict: 'Answer: N')",
    "pass1_greedy_lenient": "pass@1, greedy (lenient: last number)",
    "reward": "mean reward of samples (strict)",
    "reward_lenient": "mean reward of samples (lenient)",
    "length": "mean length of samples (tokens)",
    "length_greedy": "mean length, greedy (tokens)",
}


def _cell(value: float | None, percent: bool) -> str:
    if value is None:  # pass@k and rewards of samples: an evaluation that drew none (eval_samples 0)
        return "not measured: no samples drawn in this evaluation"
    return f"{100 * value:.1f}%" if percent else f"{value:.1f}"


def before_after(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Table rows: every metric of every hold-out group, before and after, and the change."""
    rows = []
    for group in GROUPS:
        if group not in before or group not in after:
            continue
        names = list(LABELS) + [k for k in after[group] if k.startswith("pass@")]
        for name in names:
            b, a = before[group].get(name), after[group].get(name)
            if b is None and a is None:
                continue
            percent = name.startswith("pass") or name.startswith("reward")
            fmt = partial(_cell, percent=percent)
            if b is None or a is None:
                change = "not measured: one side has no value"
            else:
                change = f"{100 * (a - b):+.1f} points" if percent else f"{a - b:+.1f}"
            cells = {"before": fmt(b), "after": fmt(a)}
            if name == "pass1_greedy" and "solved_greedy" in before[group] and "solved_greedy" in after[group]:
                solved = {when: set(m[group]["solved_greedy"]) for when, m in (("before", before), ("after", after))}
                cells = {  # with its count and 95% interval, as the SFT evaluation shows a rate
                    when: shown(
                        name, len(solved[when]) / m[group]["problems"], [len(solved[when]), m[group]["problems"]]
                    )
                    for when, m in (("before", before), ("after", after))
                }
                change += f" (gained {len(solved['after'] - solved['before'])}, lost {len(solved['before'] - solved['after'])})"
            label = LABELS.get(name, f"{name} (strict, unbiased estimator)")
            rows.append(
                {
                    "held out by": group,
                    "metric": label,
                    **cells,
                    "change": change,
                    "problems": after[group]["problems"],
                }
            )
    return rows
