"""What an RL run leaves to read: the reward curve, the before/after table, the best and
worst rollouts. Plain functions of the run's history (the newest policy checkpoint's
metrics.json) and the rollout rows; the flow turns them into Prefect artifacts."""

from __future__ import annotations

import base64
import io
from typing import Any

from tasks.evaluate import markdown_table

SHOWN_CHARS = 1500


def reward_curve_png(history: list[dict[str, Any]], evals: dict[int, dict[str, dict[str, Any]]], title: str) -> bytes:
    """Mean training reward per iteration (strict and lenient), and held-out pass@1
    (greedy) at every evaluation, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_reward, ax_eval) = plt.subplots(1, 2, figsize=(11, 4))
    its = [h["iteration"] for h in history]
    ax_reward.plot(its, [h["reward_strict"] for h in history], "o-", label="strict (Answer: N)")
    ax_reward.plot(its, [h["reward_lenient"] for h in history], "s--", alpha=0.7, label="lenient (last number)")
    ax_reward.set(
        xlabel="iteration", ylabel="mean reward of rollouts", title=f"{title}: training reward", ylim=(-0.02, 1.02)
    )
    ax_reward.legend()
    steps = sorted(evals)
    for group, style in (("all", "o-"), ("seed", "^--"), ("family", "v:")):
        points = [(s, evals[s][group]["pass1_greedy"]) for s in steps if group in evals[s]]
        if points:
            ax_eval.plot(*zip(*points), style, label=f"pass@1 greedy, held out: {group}")
    k = max(
        (int(name[5:]) for s in steps for name in evals[s].get("all", {}) if name.startswith("pass@")), default=None
    )
    points = [(s, evals[s]["all"][f"pass@{k}"]) for s in steps if f"pass@{k}" in evals[s].get("all", {})]
    if points:
        ax_eval.plot(*zip(*points), "s-", alpha=0.5, label=f"pass@{k} of samples, held out: all")
    ax_eval.set(
        xlabel="iteration (policy step)", ylabel="held-out accuracy", title="held-out problems", ylim=(-0.02, 1.02)
    )
    ax_eval.legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def rollout_markdown(rows: list[dict[str, Any]], shown: int) -> str:
    """The best rollouts (right, shortest first) and the worst (wrong, longest first)."""
    drawn = [r for r in rows if r["sample"] >= 0]
    best = sorted(
        (r for r in drawn if r["reward_strict"] >= 1), key=lambda r: (r["length"], r["prompt_id"], r["sample"])
    )
    worst = sorted(
        (r for r in drawn if r["reward_strict"] < 1), key=lambda r: (-r["length"], r["prompt_id"], r["sample"])
    )
    lines = ["Rollouts of the last iteration. Tool calls and results are shown by their special tokens.", ""]
    for title, chosen in (
        ("Best (right, shortest first)", best[:shown]),
        ("Worst (wrong, longest first)", worst[:shown]),
    ):
        lines += [f"## {title}", ""]
        if not chosen:
            lines += ["(none)", ""]
        for r in chosen:
            lines += [
                f"**{r['prompt_id']}** sample {r['sample']}: reward {r['reward']:.2f} (strict {r['reward_strict']:.0f}, lenient "
                f"{r['reward_lenient']:.0f}), {r['length']} tokens, expected {r['answer']}, read {r['strict']} / {r['lenient']}",
                "",
                f"> {r['prompt']}",
                "",
                "```",
                r["text"][:SHOWN_CHARS],
                "```",
                "",
            ]
    return "\n".join(lines)


def report_markdown(
    name: str, algorithm: str, table: list[dict[str, Any]], history: list[dict[str, Any]], curve_uri: str, png: bytes
) -> str:
    lines = [f"# RL `{name}` ({algorithm.upper()})", ""]
    if table:
        lines += [markdown_table(table), ""]
    lines += [
        "| iteration | reward (strict) | reward (lenient) | length | groups trained | loss |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for h in history:
        trained = h.get("groups", 0) - h.get("groups_skipped", 0)
        loss = "not measured: no update" if h.get("loss") is None else f"{h['loss']:.4f}"
        lines.append(
            f"| {h['iteration']} | {h['reward_strict']:.3f} | {h['reward_lenient']:.3f} | {h['length']:.1f} | {trained}/{h.get('groups', 0)} | {loss} |"
        )
    inline = base64.b64encode(png).decode()
    lines += ["", f"![reward curve](data:image/png;base64,{inline})", "", f"Reward curve: [{curve_uri}]({curve_uri})"]
    return "\n".join(lines)
