"""RL: sample many solutions, score them, reinforce the good ones.

    SFT checkpoint --snapshot--> checkpoints/{run}/{name}/step-0
    problems (mathgen, users' files) --generate/import--> rollouts/{run}/{name}/problems/{train,eval}
    per iteration N:
        step-N, train problems --rollout_chunk (mapped over prompt chunks, on the runner)--> rollouts/{run}/{name}/iter-N
        step-N, iter-N --update_policy (RFT or GRPO, gpu pool)--> checkpoints/{run}/{name}/step-(N+1)
        every eval_every: step-N, eval problems --rollout_chunk (greedy + n samples)--> rollouts/{run}/{name}/eval-N

Resumable: a re-run continues after the newest policy checkpoint, and inside an iteration
the finished rollout chunks are cache hits (same samples). Artifacts: the problems, pass@1
before and after (`rl-pass-at-1`), the report with the reward curve (`rl-report`; the PNG
lies beside the rollouts) and the best and worst rollouts (`rl-rollouts`).
"""

from __future__ import annotations

import random
from typing import Any

from prefect import flow, unmapped
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.dispatch import hand_back
from models import checkpoint, storage
from models import lake as lakes
from tasks.config import LakeConfig
from tasks.layout import Layout, artifact_key
from tasks.pretrain import resume_or_start
from tasks.rl import CODE, RLConfig
from tasks.rl import evaluate as rl_eval
from tasks.rl import problems as rl_problems
from tasks.rl.report import report_markdown, reward_curve_png, rollout_markdown
from tasks.rl.rollouts import Sampling, rollout_chunk
from tasks.rl.update import inputs_key, lineage_of, policy_version, read_rows, run_key, save_policy, update_policy
from tasks.runtime import RunnerConfig, code_version, declare, flow_run_id, in_lake, run_mapped
from tasks.tracking import TrackingConfig, track


def iteration_prompts(count: int, prompts: int, iteration: int, seed: int) -> list[int]:
    """The training problems (positions) of an iteration: consecutive windows of a seeded
    shuffle, reshuffled every pass over the problems."""
    if count == 0:
        raise ValueError("no training problems")
    out = []
    for position in range(iteration * prompts, (iteration + 1) * prompts):
        epoch, offset = divmod(position, count)
        order = list(range(count))
        random.Random(f"rl-order:{seed}:{epoch}").shuffle(order)
        out.append(order[offset])
    return out


def chunks(indices: list[int], size: int) -> list[list[int]]:
    return [indices[i : i + size] for i in range(0, len(indices), size)]


def problems_stage(
    root: str, out: str, config: RLConfig, tokenizer: str, seq_len: int, runner: RunnerConfig, name: str | None = None
) -> dict[str, str]:
    """Write and commit rollouts/{name}/problems/{train,eval}; a table artifact of them."""
    common = dict(
        config=config.problems,
        seed=config.seed,
        tokenizer=tokenizer,
        seq_len=seq_len,
        max_new_tokens=config.max_new_tokens,
    )
    parts = [in_lake(root, rl_problems.generate_problems)(out, **common)]
    files = rl_problems.user_files(config.problems)
    if files:
        parts += run_mapped(
            in_lake(root, rl_problems.import_problems),
            runner,
            f"rl: import {len(files)} problem files",
            key="rl-problems-progress",
            uri=files,
            out=unmapped(out),
            part=[f"part-user-{i:05d}" for i in range(len(files))],
            **{k: unmapped(v) for k, v in common.items()},
        )
    uris = {}
    for split in rl_problems.SPLITS:
        uri = lakes.join(out, split)
        lakes.commit(
            uri,
            [lakes.Shard(**p["shards"][split]) for p in parts],
            kind="rl-problems",
            flow_run_id=flow_run_id(),
            config_hash=run_key(config),
            code_version=code_version(*CODE),
            parents=[tokenizer, *files],
            stats={"split": split},
        )
        uris[split] = uri
    declare(*uris.values())
    rows = [
        {
            "source": p["source"],
            "train": p["shards"]["train"]["rows"],
            "eval": p["shards"]["eval"]["rows"],
            "rows read": p.get("rows", p["shards"]["train"]["rows"] + p["shards"]["eval"]["rows"]),
            "skipped": ", ".join(f"{k}: {v}" for k, v in p.get("skipped", {}).items()) or "-",
        }
        for p in parts
    ]
    create_table_artifact(
        rows, key=artifact_key("rl-problems", name), description=f"problems with known answers in {out}"
    )
    print(f"problems: {[(r['source'], r['train'], r['eval'], r['skipped']) for r in rows]}")
    return uris


def start_or_resume(run: str, init: str, config: RLConfig) -> tuple[str, int, str]:
    """The policy to continue from: the run's newest checkpoint, made with this config from
    this very init model, or a new step 0 holding the init weights (policies of another config
    or another init are moved aside, as pretraining's and SFT's are). Returns (uri, step, version)."""
    if resume_or_start(run, run_key(config), inputs_key(init), resume=False):
        found = checkpoint.latest(run)
        return found, checkpoint.load(found, training_state=False).step, policy_version(found)
    model, ckpt = checkpoint.load_model(init)
    config_json = {**ckpt.config, "init_from": init, "rl": config.model_dump(mode="json")}
    uri, version = save_policy(
        run, 0, model, config_json, optimizer=None, metrics={"updates": []}, lineage=lineage_of(config, [init], init)
    )
    return uri, 0, version


def rollouts(
    root: str,
    policy: tuple[str, str],
    problems: str,
    indices: list[int],
    iteration: int,
    out: str,
    sampling: Sampling,
    config: RLConfig,
    search: str | None,
    runner: RunnerConfig,
    what: str,
) -> dict[str, Any]:
    """Map the rollout task over chunks of `indices`, commit `out`; returns its stats."""
    parts = chunks(indices, config.eval_chunk if sampling.greedy else config.chunk)
    results = run_mapped(
        in_lake(root, rollout_chunk),
        runner,
        f"rl: {what} ({len(indices)} prompts)",
        key=f"rl-{'eval' if sampling.greedy else 'rollouts'}-progress",
        policy_uri=unmapped(policy[0]),
        version=unmapped(policy[1]),
        problems=unmapped(problems),
        indices=parts,
        iteration=unmapped(iteration),
        out=unmapped(out),
        part=[f"part-{i:05d}" for i in range(len(parts))],
        sampling=unmapped(sampling),
        search=unmapped(search),
    )
    totals = {k: sum(r[k] for r in results) for k in results[0] if k != "shard"}
    n = max(1, totals["samples"])
    stats = {
        "iteration": iteration,
        "prompts": len(indices),
        **totals,
        **{k: totals[k] / n for k in ("reward", "reward_strict", "reward_lenient", "length")},
    }
    if sampling.greedy:
        stats["metrics"] = rl_eval.metrics(read_rows_of(out, results))
    lakes.commit(
        out,
        [lakes.Shard(**r["shard"]) for r in results],
        kind="rl-rollouts",
        flow_run_id=flow_run_id(),
        config_hash=run_key(config),
        code_version=code_version(*CODE),
        parents=[policy[0], problems],
        stats=stats,
    )
    return stats


def read_rows_of(out: str, results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for res in results for r in lakes.read_shard(lakes.join(out, res["shard"]["path"])).to_pylist()]


def evaluation(
    root: str,
    out: str,
    step: int,
    policy: tuple[str, str],
    problems: str,
    config: RLConfig,
    search: str | None,
    runner: RunnerConfig,
) -> dict[str, Any]:
    """The held-out metrics of policy `step` (reused from the lake when already committed)."""
    uri = lakes.join(out, f"eval-{step:06d}")
    found = lakes.read_manifest(uri)
    if found is not None and found.config_hash == run_key(config) and policy[0] in found.parents:
        return found.stats["metrics"]
    count = lakes.manifest(problems).rows
    stats = rollouts(
        root,
        policy,
        problems,
        list(range(count)),
        step,
        uri,
        Sampling.of(config, evaluation=True),
        config,
        search,
        runner,
        f"evaluate step {step}",
    )
    m, (group, judged) = stats["metrics"]["all"], rl_eval.headline(stats["metrics"])
    print(
        f"step {step}: held-out ({group}) pass@1 {judged['pass1_greedy']:.3f}; all held-out pass@1 {m['pass1_greedy']:.3f} "
        f"(lenient {m['pass1_greedy_lenient']:.3f}), pass@{config.eval_samples} {m.get(f'pass@{config.eval_samples}', 0):.3f}, "
        f"mean length {m['length']:.1f}"
    )
    return stats["metrics"]


@flow(name="rl", log_prints=True)
def rl(
    lake: LakeConfig = LakeConfig(),
    config: RLConfig = RLConfig(),
    init: str | None = None,
    search: str | None = None,
    crawl: str | None = None,
    runner: RunnerConfig = RunnerConfig(),
    run: str | None = None,
    tracking: TrackingConfig = TrackingConfig(),
) -> dict[str, Any]:
    """Reinforce `init` (an SFT checkpoint URI or name; default config.init, then the run's
    `sft` model) on problems with known answers, into rollouts/{run}/{name} and
    checkpoints/{run}/{name}. The engine's tools are on: the calculator always, search over
    `search` (default: the crawl's index, else the one in the model's lineage, when it exists)."""
    root = lake.open()
    layout = Layout(root)
    init = layout.model(init or config.init or (f"{run}/sft" if run else "sft"))
    init_cfg = storage.read_json(storage.join(init, "config.json"))
    tokenizer, seq_len = init_cfg["tokenizer"], init_cfg["model"]["seq_len"]
    search = search or (layout.search(crawl) if crawl else layout.search_for(init))
    search = search if search and lakes.exists(search) else None
    out, folder = layout.rollouts(run, config.name), layout.checkpoints(run, config.name)

    problems = problems_stage(root, lakes.join(out, "problems"), config, tokenizer, seq_len, runner, run)
    train_count = lakes.manifest(problems["train"]).rows
    uri, step, version = start_or_resume(folder, init, config)
    declare(uri)
    if step:
        print(f"resuming {folder} after iteration {step}")

    evals = {
        0: evaluation(
            root,
            out,
            0,
            (checkpoint.step_uri(folder, 0), policy_version(checkpoint.step_uri(folder, 0))),
            problems["eval"],
            config,
            search,
            runner,
        )
    }
    for iteration in range(step, config.iterations):
        indices = iteration_prompts(train_count, config.prompts, iteration, config.seed)
        sampled = rollouts(
            root,
            (uri, version),
            problems["train"],
            indices,
            iteration,
            lakes.join(out, f"iter-{iteration:06d}"),
            Sampling.of(config),
            config,
            search,
            runner,
            f"iteration {iteration}",
        )
        updated = in_lake(root, update_policy)(
            uri, lakes.join(out, f"iter-{iteration:06d}"), init, folder, iteration, config
        )
        uri, version = updated["checkpoint"], updated["version"]
        declare(lakes.join(out, f"iter-{iteration:06d}"), uri)
        print(
            f"iteration {iteration}: reward {sampled['reward_strict']:.3f} strict, {sampled['reward_lenient']:.3f} lenient, "
            f"length {sampled['length']:.1f}; {updated['items']} sequences trained, loss {updated['loss']}"
        )
        done = iteration + 1
        if config.eval_every and done % config.eval_every == 0 and done != config.iterations:
            evals[done] = evaluation(root, out, done, (uri, version), problems["eval"], config, search, runner)
    last = checkpoint.load(uri, training_state=False).step
    if last not in evals:
        evals[last] = evaluation(root, out, last, (uri, version), problems["eval"], config, search, runner)
    result = publish(root, out, folder, config, evals, last, run)
    held_out = [
        (f"heldout/{k}", float(v), step)
        for step, e in evals.items()
        for k, v in e["all"].items()
        if isinstance(v, (int, float))
    ]
    mlflow_run = track(tracking, "rl", result["checkpoint"], data=problems.values(), extra=held_out)
    return hand_back(root, {**result, **({"mlflow_run": mlflow_run} if mlflow_run else {})})


def history_of(out: str, run: str) -> list[dict[str, Any]]:
    """Per iteration: the rollouts' stats (their manifests) and the update's (the newest
    policy's metrics)."""
    updates = {
        u["iteration"]: u
        for u in storage.read_json(storage.join(checkpoint.latest(run), "metrics.json")).get("updates", [])
    }
    history = []
    for iteration in sorted(updates):
        rolled = lakes.manifest(lakes.join(out, f"iter-{iteration:06d}")).stats
        history.append(
            {**updates[iteration], **{k: rolled[k] for k in ("reward", "reward_strict", "reward_lenient", "length")}}
        )
    return history


def publish(
    root: str, out: str, run: str, config: RLConfig, evals: dict[int, Any], last: int, name: str | None = None
) -> dict[str, Any]:
    """The artifacts: pass@1 before and after, the report with the reward curve, the best
    and worst rollouts of the last iteration."""
    history = history_of(out, run)
    table = rl_eval.before_after(evals[0], evals[last])
    if table:
        create_table_artifact(
            table,
            key=artifact_key("rl-pass-at-1", name),
            description=f"{config.name}: held-out problems, step 0 (SFT) and step {last}",
        )
    curve_uri = lakes.join(out, "reward.png")
    png = reward_curve_png(history, evals, config.name)
    storage.write_bytes(curve_uri, png, atomic=True)
    create_markdown_artifact(
        report_markdown(config.name, config.algorithm, table, history, curve_uri, png),
        key=artifact_key("rl-report", name),
        description=f"RL {config.name}: reward curve and held-out accuracy",
    )
    if history:
        rows = read_rows(lakes.join(out, f"iter-{history[-1]['iteration']:06d}"), None)
        create_markdown_artifact(
            rollout_markdown(rows, config.shown),
            key=artifact_key("rl-rollouts", name),
            description="best and worst rollouts",
        )
    group, before = rl_eval.headline(evals[0])
    after = evals[last][group]
    print(
        f"{config.name}: held-out ({group}) pass@1 {before['pass1_greedy']:.3f} -> {after['pass1_greedy']:.3f} over {last} iterations; {curve_uri}"
    )
    return {
        "checkpoint": checkpoint.step_uri(run, last),
        "reward_curve": curve_uri,
        "before": evals[0],
        "after": evals[last],
        "history": history,
        "evals": {str(k): v for k, v in sorted(evals.items())},
    }
