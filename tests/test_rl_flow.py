"""RL end to end on a tiny model through the real Prefect test server: rollouts are
deterministic and cached, the flow updates, evaluates, resumes and leaves its artifacts, and
its rollouts on a local Dask cluster give the same rewards as on threads."""

from __future__ import annotations

import glob

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from models import lake
from tasks.config import LakeConfig
from tasks.rl import GRPOConfig, ProblemConfig, RFTConfig, RLConfig
from tasks.rl import rollouts as rl_rollouts
from tasks.rl.problems import SCHEMA, to_table, user_problems
from tasks.rl.rollouts import Sampling, rollout_chunk
from tasks.rl.update import weights_version
from tasks.runtime import RunnerConfig, in_lake
from tests.support import rl_world


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return rl_world.build(str(tmp_path_factory.mktemp("rl-lake")))


def config(world: dict, **changes) -> RLConfig:
    base = RLConfig(
        name="run",
        algorithm="grpo",
        iterations=2,
        prompts=4,
        samples=4,
        chunk=2,
        max_new_tokens=40,
        top_k=None,
        problems=ProblemConfig(train=0, eval=0, datasets=[world["problems"]], eval_fraction=0.25),
        eval_samples=2,
        eval_chunk=8,
        eval_every=1,
        grpo=GRPOConfig(lr=3e-3, clip_eps=0.2),
        rft=RFTConfig(lr=3e-3),
        shown=2,
    )
    return base.model_copy(update=changes)


def problems_dataset(world: dict, name: str) -> str:
    uri = lake.join(world["root"], "problems", name)
    rows = [r for split, r in user_problems(world["problems"], 0, 0.0, {}) if split == "train"][:6]
    lake.write_dataset(uri, [to_table(rows)], kind="rl-problems")
    assert to_table(rows).schema == SCHEMA
    return uri


def version_of(uri: str) -> str:
    from models import checkpoint

    return weights_version(checkpoint.load(uri, training_state=False).model)


def test_rollouts_asked_for_the_code_tool_start_inside_its_call(world, prefect_server):
    """tool="python": every prompt ends in <|python_start|>, only the code tool runs, and
    what a sample writes up to <|python_end|> is run in the sandbox (its output forced, mask 0)."""
    from models.tokenizer import Tokenizer

    problems = problems_dataset(world, "code-tool")
    sampling = Sampling(samples=4, max_new_tokens=48, top_k=None, seed=7, tool="python")
    out = lake.join(world["root"], "rollouts", "code-tool")
    result = rollout_chunk.fn(
        policy_uri=world["sft"],
        version=version_of(world["sft"]),
        problems=problems,
        iteration=0,
        indices=[0, 1],
        out=out,
        part="a",
        sampling=sampling,
    )
    rows = lake.read_shard(lake.join(out, result["shard"]["path"])).to_pylist()
    tok = Tokenizer.load(world["tokenizer"])
    start, end, output = (tok.special(s) for s in ("<|python_start|>", "<|python_end|>", "<|python_output_start|>"))
    assert len(rows) == 8 and all(r["prompt_tokens"][-1] == start for r in rows)
    for r in rows:
        closed = end in r["tokens"]
        assert r["tool_calls"] >= int(closed)
        if closed:  # the output follows the call's end, forced
            i = r["tokens"].index(end)
            assert r["tokens"][i + 1] == output and r["mask"][i + 1] == 0 and r["mask"][i] == 1


def test_rollouts_are_seeded_per_sample_and_cached(world, prefect_server):
    problems = problems_dataset(world, "determinism")
    policy, version = world["sft"], version_of(world["sft"])
    sampling = Sampling(samples=3, max_new_tokens=20, top_k=None, seed=7)
    out = lake.join(world["root"], "rollouts", "determinism")
    args = dict(policy_uri=policy, version=version, problems=problems, iteration=2, sampling=sampling)

    loads = rl_rollouts.LOADS["count"]
    first = rollout_chunk.fn(indices=[0, 1, 2], out=out, part="a", **args)
    again = rollout_chunk.fn(indices=[2, 1], out=out, part="b", **args)
    assert rl_rollouts.LOADS["count"] - loads <= 1  # one load per process for one policy version
    shard = lambda result: lake.read_shard(lake.join(out, result["shard"]["path"])).to_pylist()  # noqa: E731
    rows_a = {(r["prompt_id"], r["sample"]): r for r in shard(first)}
    rows_b = {(r["prompt_id"], r["sample"]): r for r in shard(again)}
    assert first["samples"] == 9 and again["samples"] == 6
    for key, r in rows_b.items():  # the same prompt, iteration and seed: the same samples, in any chunk
        assert (r["tokens"], r["reward"], r["text"]) == (
            rows_a[key]["tokens"],
            rows_a[key]["reward"],
            rows_a[key]["text"],
        )
    assert len({tuple(r["tokens"]) for r in rows_a.values()}) > 1  # and different samples differ
    other = rollout_chunk.fn(indices=[2], out=out, part="c", **{**args, "iteration": 3})
    rows_c = shard(other)
    assert other["samples"] == 3 and [r["tokens"] for r in rows_c] != [
        rows_b[(r["prompt_id"], r["sample"])]["tokens"] for r in rows_c
    ]
    for r in rows_a.values():  # each row is scored by its reply, and only sampled tokens are trained
        assert (
            r["reward_strict"] == float(r["strict"] == str(r["answer"]))
            and len(r["mask"]) == len(r["tokens"]) == r["length"]
        )
        assert r["sampled"] == sum(r["mask"]) and r["prompt_tokens"][0] != r["tokens"][0]

    @flow
    def twice() -> list:
        task = in_lake(world["root"], rollout_chunk)
        return [task(indices=[0, 1], out=out, part="d", **args, return_state=True) for _ in range(2)]

    states = twice()
    assert states[0].is_completed() and states[1].name == "Cached"
    assert states[0].result() == states[1].result()


def run_flow(world: dict, cfg: RLConfig, runner: RunnerConfig = RunnerConfig()) -> dict:
    from flows.rl import rl

    return rl(lake=LakeConfig(root=world["root"]), config=cfg, init=world["sft"], runner=runner)


def manifest_times(root: str, name: str) -> dict[str, str]:
    return {uri: lake.manifest(uri).created_at for uri in lake.list_datasets(lake.join(root, "rollouts", name))}


def test_flow_updates_evaluates_resumes_and_reports(world, prefect_server):
    cfg = config(world)
    result = run_flow(world, cfg)
    root, run = world["root"], lake.join(world["root"], "checkpoints", "run")
    from models import checkpoint

    assert checkpoint.committed_steps(run) == [0, 1, 2]
    rollouts = lake.join(root, "rollouts", "run")
    for it in (0, 1):
        m = lake.manifest(lake.join(rollouts, f"iter-{it:06d}"))
        assert m.rows == 4 * 4 and m.stats["samples"] == 16
        assert lake.join(run, f"step-{it:06d}") in m.parents
    evals = lake.manifest(lake.join(rollouts, "eval-000000"))
    eval_problems = lake.manifest(lake.join(rollouts, "problems", "eval")).rows
    assert 0 < eval_problems < 48 and evals.rows == eval_problems * 3  # greedy + 2 samples each
    assert set(result["evals"]) == {"0", "1", "2"}
    assert 0 <= result["after"]["all"]["pass1_greedy"] <= 1 and result["before"]["all"]["problems"] == eval_problems
    assert [h["iteration"] for h in result["history"]] == [0, 1]
    assert any(h["items"] for h in result["history"])  # some group had something to learn
    weights = [version_of(lake.join(run, f"step-{s:06d}")) for s in (0, 1, 2)]
    for h in result["history"]:  # an update changes the policy exactly when it had something to train on
        assert (weights[h["iteration"] + 1] != weights[h["iteration"]]) == bool(h["items"])
    assert lake.filesystem(result["reward_curve"])[0].cat_file(result["reward_curve"])[:8] == b"\x89PNG\r\n\x1a\n"

    wanted = ["rl-pass-at-1", "rl-report", "rl-rollouts", "rl-problems"]
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=wanted)))
    assert {a.key for a in found} == set(wanted)
    report = next(a for a in found if a.key == "rl-report").data
    assert "reward curve" in report and "pass@1, greedy" in report

    # A re-run continues after the last iteration: nothing is redone.
    before = manifest_times(root, "run")
    again = run_flow(world, cfg)
    assert checkpoint.committed_steps(run) == [0, 1, 2] and manifest_times(root, "run") == before
    assert again["after"] == result["after"]
    # More iterations continue from step 2; earlier rollouts stay as they were.
    longer = run_flow(world, config(world, iterations=3))
    assert checkpoint.committed_steps(run) == [0, 1, 2, 3]
    assert [h["iteration"] for h in longer["history"]] == [0, 1, 2]
    after = manifest_times(root, "run")
    assert all(after[uri] == t for uri, t in before.items() if "iter-" in uri)
    # Another configuration never continues these policies: they are moved aside, kept whole,
    # and it starts anew from its init.
    other = config(world, iterations=1, grpo=GRPOConfig(lr=1e-2))
    run_flow(world, other)
    assert checkpoint.committed_steps(run) == [0, 1]
    (aside,) = glob.glob(f"{run}-*")
    assert checkpoint.committed_steps(aside) == [0, 1, 2, 3]
    # Nor does the same configuration started from another model (an SFT model trained again).
    from flows.rl import rl

    init = lake.join(aside, "step-000003")
    rl(lake=LakeConfig(root=root), config=other, init=init, runner=RunnerConfig())
    assert version_of(lake.join(run, "step-000000")) == version_of(init)
    assert len(glob.glob(f"{run}-*")) == 2


def test_rft_trains_only_on_right_answers(world, prefect_server):
    cfg = config(world, name="rft", algorithm="rft", iterations=1, eval_every=0)
    result = run_flow(world, cfg)
    rows = [
        r for b in lake.iter_batches(lake.join(world["root"], "rollouts", "rft", "iter-000000")) for r in b.to_pylist()
    ]
    right: dict[str, set] = {}
    for r in rows:
        if r["reward_strict"] == 1:
            right.setdefault(r["prompt_id"], set()).add(tuple(r["tokens"]))
    expected = sum(min(len(found), cfg.rft.per_prompt) for found in right.values())
    assert expected > 0 and result["history"][0]["items"] == expected
    assert result["history"][0]["groups_skipped"] == 4 - len(right)


@pytest.mark.slow
def test_dask_rollouts_match_threads(world, prefect_server):
    """Two worker processes of a local Dask cluster draw the same samples as the thread pool."""
    cfg = config(
        world,
        iterations=1,
        eval_every=0,
        problems=ProblemConfig(train=0, eval=0, datasets=[world["problems"]], eval_fraction=0.1),
    )
    run_flow(world, cfg.model_copy(update={"name": "threads"}))
    run_flow(world, cfg.model_copy(update={"name": "dask"}), RunnerConfig(kind="dask", max_workers=2))

    def rows(name: str) -> dict:
        uri = lake.join(world["root"], "rollouts", name, "iter-000000")
        return {
            (r["prompt_id"], r["sample"]): (r["tokens"], r["reward_strict"], r["reward_lenient"])
            for b in lake.iter_batches(uri)
            for r in b.to_pylist()
        }

    threads, dask = rows("threads"), rows("dask")
    assert len(threads) == 16 and threads == dask
