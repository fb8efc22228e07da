"""`crawl2chat benchmark`: lm-eval through our engine (models/harness.py), CORE from DCLM's
bundle (tasks/core.py), scores and the lake dataset (tasks/benchmark.py, flows/benchmark.py).

The tasks are small local ones the tests write (lm-eval YAML over JSONL: a multiple-choice
task and a generation task), since the hub is out of reach here. Three routes must give one
number on them: our LM, lm-eval's `hf` backend on the exported folder, and lm-eval's
`local-completions` against `crawl2chat serve`.
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from models import checkpoint
from models.chat import render_for_completion
from models.engine import Engine
from models.export import export
from models.gpt import GPT, GPTConfig
from models.tokenizer import Tokenizer, train
from tasks import core
from tasks.benchmark import BenchmarkConfig, Plan, evaluate, score_rows
from tests.conftest import free_port

pytest.importorskip("lm_eval")
import models.harness  # noqa: E402,F401  registers the "crawl2chat" model with lm-eval

CFG = dict(seq_len=128, n_layer=2, n_head=4, n_kv_head=2, n_embd=64)
WORDS = ["apple", "river", "stone", "cloud", "green", "music", "table", "light", "winter", "paper", "glass", "horse"]


@pytest.fixture(scope="module", autouse=True)
def offline():
    with pytest.MonkeyPatch.context() as patch:
        for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
            patch.setenv(name, "1")
        yield


@pytest.fixture(scope="module")
def tok(shared_data) -> Tokenizer:
    truth = json.loads((shared_data / "extraction-benchmark" / "ground-truth.json").read_text())
    return train([truth[k]["articleBody"] for k in sorted(truth)][:120], 2048)


def random_model(vocab_size: int) -> GPT:
    """Weights drawn wide enough that the model prefers some continuations by far: a score
    that several routes must agree on is not a tie broken by rounding."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=vocab_size, **CFG))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
    return model.eval()


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory, tok) -> dict[str, str]:
    """A base checkpoint, the same weights as a chat checkpoint, and the base one exported."""
    root = tmp_path_factory.mktemp("bench")
    tok.save(str(root / "tok"))
    model = random_model(tok.vocab_size)
    config = {"model": dataclasses.asdict(model.config), "tokenizer": str(root / "tok")}
    base = checkpoint.save(str(root / "lake" / "checkpoints" / "base"), 2, model=model.state_dict(), config=config)
    chat = checkpoint.save(
        str(root / "lake" / "checkpoints" / "chat"),
        2,
        model=model.state_dict(),
        config={**config, "data_format": "sft"},
    )
    export(base, str(root / "hf"))
    return {
        "root": str(root),
        "lake": str(root / "lake"),
        "base": base,
        "chat": chat,
        "hf": str(root / "hf"),
        "tok": str(root / "tok"),
    }


def greedy_text(ckpt: str, prompt: str, until: list[str], max_new: int) -> str:
    """What the engine writes after <|bos|> + prompt (greedy), cut at the first `until`."""
    engine = Engine.from_checkpoint(ckpt)
    ids = [engine.tokenizer.bos_id, *engine.tokenizer.encode(prompt)]
    text = engine.generate(ids, 1, max_new_tokens=max_new, temperature=0.0)[0].text
    for u in until:
        text = text.split(u, 1)[0]
    return text


@pytest.fixture(scope="module")
def local_tasks(tmp_path_factory, ckpts) -> str:
    """local_mc: 24 questions of 4 choices; local_gen: 8 prompts, the first four with the
    model's own greedy answer as the target and the rest with one it never writes, so a
    route that generates anything else scores other than 0.5."""
    folder = tmp_path_factory.mktemp("local-tasks")
    r = random.Random(0)
    mc = [
        {
            "q": f"Question {i}: which word comes after the {r.choice(WORDS)}?",
            "choices": r.sample(WORDS, 4),
            "gold": r.randrange(4),
        }
        for i in range(24)
    ]
    (folder / "mc.jsonl").write_text("".join(json.dumps(d) + "\n" for d in mc))
    gen = []
    for i in range(8):
        q = f"The {r.choice(WORDS)} and the {r.choice(WORDS)} are"
        gen.append(
            {"q": q, "answer": greedy_text(ckpts["base"], q, ["\n", "."], 6).strip() if i < 4 else "never written"}
        )
    assert all(g["answer"] for g in gen[:4])
    (folder / "gen.jsonl").write_text("".join(json.dumps(d) + "\n" for d in gen))
    tasks = {
        "local_mc": {
            "output_type": "multiple_choice",
            "doc_to_text": "{{q}}",
            "doc_to_choice": "{{choices}}",
            "doc_to_target": "gold",
            "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
            "data": "mc.jsonl",
        },
        "local_gen": {
            "output_type": "generate_until",
            "doc_to_text": "{{q}}",
            "doc_to_target": "{{answer}}",
            "generation_kwargs": {"until": ["\n", "."], "max_gen_toks": 6, "do_sample": False},
            "filter_list": [{"name": "strip", "filter": [{"function": "remove_whitespace"}]}],
            "metric_list": [
                {"metric": "exact_match", "aggregation": "mean", "higher_is_better": True, "ignore_punctuation": False}
            ],
            "data": "gen.jsonl",
        },
    }
    for name, spec in tasks.items():
        data = spec.pop("data")
        body = {
            "task": name,
            "dataset_path": "json",
            "dataset_kwargs": {"data_files": {"test": str(folder / data)}},
            "test_split": "test",
            **spec,
        }
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(body, sort_keys=False))
    return str(folder)


def by_route(results: dict) -> dict:
    """Per task: the accuracy, and each request's answer (loglikelihood, or generated text)."""
    out = {}
    for task, samples in results["samples"].items():
        metric = "acc,none" if task == "local_mc" else "exact_match,strip"
        answers = [
            [r[0][0] if isinstance(r[0], (list, tuple)) else r[0] for r in s["resps"]]
            for s in sorted(samples, key=lambda s: s["doc_id"])
        ]
        out[task] = (results["results"][task][metric], answers)
    return out


def simple_evaluate(model, model_args, include: str, **options):
    import lm_eval
    from lm_eval.tasks import TaskManager

    return lm_eval.simple_evaluate(
        model=model,
        model_args=model_args,
        tasks=["local_mc", "local_gen"],
        task_manager=TaskManager(include_path=include),
        log_samples=True,
        **options,
    )


@pytest.fixture(scope="module")
def engine_route(ckpts, local_tasks) -> dict:
    return by_route(simple_evaluate("crawl2chat", f"checkpoint={ckpts['base']},batch_size=5", local_tasks))


def test_engine_lm_scores_what_the_model_computes(engine_route, ckpts, local_tasks):
    """The engine route's loglikelihoods are the model's own, token by token, and its
    accuracy is the argmax over choices: checked against a direct forward pass."""
    model, _ = checkpoint.load_model(ckpts["base"])
    tok = Tokenizer.load(ckpts["tok"])
    docs = [json.loads(line) for line in open(Path(local_tasks) / "mc.jsonl")]
    acc, answers = engine_route["local_mc"]
    right = 0
    for doc, lls in zip(docs, answers):
        expected = []
        for choice in doc["choices"]:
            ids = [tok.bos_id, *tok.encode(doc["q"] + " " + choice)]
            n = len(ids) - 1 - len(tok.encode(doc["q"]))
            logp = F.log_softmax(model(torch.tensor([ids[:-1]]))[0].float(), -1)
            expected.append(sum(logp[i - 1, ids[i]].item() for i in range(len(ids) - n, len(ids))))
        assert lls == pytest.approx(expected, abs=1e-4)
        right += max(range(4), key=expected.__getitem__) == doc["gold"]
    assert acc == right / len(docs)
    assert 0 < acc < 1  # not a degenerate score: the routes below must agree on something
    assert engine_route["local_gen"][0] == 0.5


def assert_same(route: dict, engine_route: dict, name: str) -> None:
    """Scores equal; loglikelihoods equal to float rounding; generations equal."""
    for task in ("local_mc", "local_gen"):
        ours, theirs = engine_route[task], route[task]
        assert theirs[0] == ours[0], f"{name} scores {task} {theirs[0]}, the engine {ours[0]}"
        if task == "local_mc":
            for a, b in zip(ours[1], theirs[1]):
                assert b == pytest.approx(a, abs=1e-3), name
        else:
            assert [[invalid_bytes_as_one(t) for t in g] for g in theirs[1]] == [
                [invalid_bytes_as_one(t) for t in g] for g in ours[1]
            ], name


def invalid_bytes_as_one(text: str) -> str:
    """A random model emits byte tokens that are not UTF-8. We decode them as Python does (each
    invalid sequence one U+FFFD, the valid bytes beside it kept); HF's ByteFallback decoder
    turns every byte of a run that fails into U+FFFD. Same ids, so compare words with a
    U+FFFD as one mark."""
    return re.sub(r"\S*\ufffd\S*", "\ufffd", text)


def test_hf_backend_on_the_export_gives_the_same_number(engine_route, ckpts, local_tasks):
    """Route 2: lm-eval's `hf` backend on the exported folder (<|bos|> first, as in training)."""
    route = by_route(
        simple_evaluate("hf", f"pretrained={ckpts['hf']},dtype=float32,add_bos_token=True", local_tasks, device="cpu")
    )
    assert_same(route, engine_route, "hf")


def test_local_completions_against_serve_gives_the_same_number(engine_route, ckpts, local_tasks):
    """Route 3: lm-eval's `local-completions` against `crawl2chat serve` (token ids in,
    echo + logprobs out for loglikelihoods, greedy completions for generations)."""
    pytest.importorskip("flows.serve", reason="crawl2chat serve is not in this branch")
    route = serve_route(ckpts, local_tasks)
    assert_same(route, engine_route, "local-completions")


def bos_first_tokenizer(export: Path, out: Path) -> Path:
    """The exported tokenizer, putting <|bos|> first when asked for special tokens (a
    post-processor, as Llama 3's tokenizer.json has): lm-eval's API models load a tokenizer
    without passing add_bos_token, so the client's copy must say it."""
    out.mkdir(exist_ok=True)
    shutil.copy(export / "tokenizer_config.json", out)
    body = json.loads((export / "tokenizer.json").read_text())
    bos = {"id": "<|bos|>", "type_id": 0}
    bos_id = next(t["id"] for t in body["added_tokens"] if t["content"] == "<|bos|>")
    body["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": bos}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [
            {"SpecialToken": bos},
            {"Sequence": {"id": "A", "type_id": 0}},
            {"Sequence": {"id": "B", "type_id": 1}},
        ],
        "special_tokens": {"<|bos|>": {"id": "<|bos|>", "ids": [bos_id], "tokens": ["<|bos|>"]}},
    }
    (out / "tokenizer.json").write_text(json.dumps(body, ensure_ascii=False))
    return out


def serve_route(ckpts: dict, local_tasks: str) -> dict:
    """lm-eval's local-completions, tokenizing with the exported tokenizer (ids sent as the
    prompt, <|bos|> first), against the server app on loopback."""
    from tests.test_serve import running

    client_tok = bos_first_tokenizer(Path(ckpts["hf"]), Path(ckpts["root"]) / "client-tokenizer")
    with running(Engine.from_checkpoint(ckpts["base"]), "crawl2chat") as base_url:
        args = (
            f"model=crawl2chat,base_url={base_url}/v1/completions,tokenizer={client_tok},tokenizer_backend=huggingface,"
            f"tokenized_requests=True,add_bos_token=True,max_length={CFG['seq_len']},max_gen_toks=6,num_concurrent=4"
        )
        return by_route(simple_evaluate("local-completions", args, local_tasks))


# -- chat checkpoints ---------------------------------------------------------------------


def test_chat_template_gives_our_chat_ids_and_the_exports(ckpts):
    """A chat checkpoint's prompts, rendered by lm-eval through our template, are the ids
    models/chat.py renders and the exported tokenizer's chat template gives; without a
    template a special's name in text stays text."""
    from transformers import AutoTokenizer

    from models.harness import EngineLM

    lm = EngineLM(checkpoint=ckpts["chat"])
    assert lm.chat and lm.eot_token_id == lm.tok.special("<|assistant_end|>")
    assert lm.tok_encode("<|user_end|>") == [lm.bos, *lm.tok.encode("<|user_end|>")]
    hf = AutoTokenizer.from_pretrained(ckpts["hf"])
    plain = [{"role": "user", "content": "What is the capital of France?"}]
    assert lm.tok_encode(lm.apply_chat_template(plain)) == render_for_completion(lm.tok, plain)
    assert hf.apply_chat_template(
        plain, add_generation_prompt=True, tokenize=True, return_dict=False
    ) == render_for_completion(lm.tok, plain)
    # lm-eval continuing an assistant turn: no <|assistant_end|> after it.
    open_turn = lm.tok_encode(
        lm.apply_chat_template([*plain, {"role": "assistant", "content": "Paris"}], add_generation_prompt=False)
    )
    assert open_turn == render_for_completion(lm.tok, plain) + lm.tok.encode("Paris")


def test_rolling_loglikelihood_is_the_documents_log_probability(ckpts):
    from lm_eval.api.instance import Instance

    from models.harness import EngineLM

    lm = EngineLM(checkpoint=ckpts["base"])
    text = "The river runs past the stone table in winter."
    ids = [lm.bos, *lm.tok.encode(text)]
    logp = F.log_softmax(lm.model(torch.tensor([ids[:-1]]))[0].float(), -1)
    expected = sum(logp[i - 1, ids[i]].item() for i in range(1, len(ids)))
    request = Instance(request_type="loglikelihood_rolling", doc={}, arguments=(text,), idx=0)
    assert lm.loglikelihood_rolling([request])[0] == pytest.approx(expected, abs=1e-3)
    # Longer than the context: windows, each token predicted once (the sum grows with the text).
    long = " ".join([text] * 40)
    assert len(lm.tok.encode(long)) > 3 * CFG["seq_len"]
    (total,) = lm.loglikelihood_rolling(
        [Instance(request_type="loglikelihood_rolling", doc={}, arguments=(long,), idx=0)]
    )
    assert total < 0 and total == pytest.approx(total)


# -- CORE ---------------------------------------------------------------------------------


def write_bundle(folder: Path) -> Path:
    """A small eval bundle in DCLM's layout: a multiple-choice, a schema and a language
    modelling task (the real one has 22), with baselines in percent as DCLM writes them."""
    r = random.Random(1)
    (folder / "eval_data" / "mine").mkdir(parents=True)
    mc = [
        {"query": f"Q{i}: the {r.choice(WORDS)} is", "choices": r.sample(WORDS, 4), "gold": r.randrange(4)}
        for i in range(30)
    ]
    schema = [
        {
            "context_options": [f"The {a} fell on the {b}." for a, b in (r.sample(WORDS, 2), r.sample(WORDS, 2))],
            "continuation": f"It was {r.choice(WORDS)}.",
            "gold": r.randrange(2),
        }
        for _ in range(20)
    ]
    lm = [{"context": f"{w} {w} {w} ", "continuation": f" {w}"} for w in WORDS]
    for name, rows in (("mc", mc), ("schema", schema), ("lm", lm)):
        (folder / "eval_data" / "mine" / f"{name}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in rows))
    (folder / "core.yaml").write_text(
        yaml.safe_dump(
            {
                "icl_tasks": [
                    {
                        "label": "my_mc",
                        "dataset_uri": "mine/mc.jsonl",
                        "num_fewshot": [3],
                        "icl_task_type": "multiple_choice",
                        "continuation_delimiter": " ",
                    },
                    {
                        "label": "my_schema",
                        "dataset_uri": "mine/schema.jsonl",
                        "num_fewshot": [0],
                        "icl_task_type": "schema",
                    },
                    {
                        "label": "my_lm",
                        "dataset_uri": "mine/lm.jsonl",
                        "num_fewshot": [2],
                        "icl_task_type": "language_modeling",
                        "continuation_delimiter": "",
                    },
                ]
            }
        )
    )
    (folder / "eval_meta_data.csv").write_text(
        "Eval Task,Task Category,Random baseline\nmy_mc,x,25\nmy_schema,x,50\nmy_lm,x,0\n"
    )
    return folder


def nanochat_accuracy(model: GPT, tok: Tokenizer, task: dict) -> float:
    """nanochat's CORE scoring of one task, written out here from its description: the same
    shuffles and few-shot draws, prompts as whole texts after <|bos|>, the option with the
    lowest mean loss over the tokens after the common prefix (choices) or before the common
    suffix (schema); language modelling: every continuation token greedy."""
    items = [json.loads(line) for line in open(task["data"])]
    random.Random(1337).shuffle(items)
    d, right = task["delimiter"], 0
    for i, item in enumerate(items):
        shots = (
            []
            if not task["fewshot"]
            else [
                items[j]
                for j in random.Random(1234 + i).sample([j for j in range(len(items)) if j != i], task["fewshot"])
            ]
        )
        if task["type"] == "multiple_choice":
            head = "".join(f"{s['query']}{d}{s['choices'][s['gold']]}\n\n" for s in shots)
            prompts = [head + item["query"] + d + c for c in item["choices"]]
        elif task["type"] == "schema":
            head = "".join(f"{s['context_options'][s['gold']]}{d}{s['continuation']}\n\n" for s in shots)
            prompts = [head + c + d + item["continuation"] for c in item["context_options"]]
        else:
            head = "".join(f"{s['context'].strip()}{d}{s['continuation']}\n\n" for s in shots)
            without = (head + item["context"].strip() + d).strip()
            prompts = [without, head + item["context"].strip() + d + item["continuation"]]
        seqs = [[tok.bos_id, *tok.encode(p)] for p in prompts]
        if task["type"] == "language_modeling":
            start, ids = len(seqs[0]), seqs[1]
            logits = model(torch.tensor([ids]))[0]
            right += all(logits[j - 1].argmax().item() == ids[j] for j in range(start, len(ids)))
            continue
        if task["type"] == "multiple_choice":
            common = next(
                k for k in range(min(map(len, seqs)) + 1) if k == min(map(len, seqs)) or len({s[k] for s in seqs}) > 1
            )
            spans = [(common, len(s)) for s in seqs]
        else:
            suffix = next(
                k
                for k in range(min(map(len, seqs)) + 1)
                if k == min(map(len, seqs)) or len({s[-1 - k] for s in seqs}) > 1
            )
            spans = [(len(s) - suffix, len(s)) for s in seqs]
        losses = []
        for s, (a, b) in zip(seqs, spans):
            logp = F.log_softmax(model(torch.tensor([s]))[0].float(), -1)
            losses.append(-sum(logp[j - 1, s[j]].item() for j in range(a, b)) / (b - a))
        right += losses.index(min(losses)) == item["gold"]
    return right / len(items)


def test_core_from_a_bundle_scores_as_nanochat(tmp_path, ckpts):
    """CORE's tasks built from a bundle in DCLM's layout score what nanochat's own procedure
    gives on the same model, and CORE is their mean centered accuracy."""
    bundle = write_bundle(tmp_path / "bundle")
    rows, info = evaluate(ckpts["base"], ["core"], BenchmarkConfig(core_bundle=str(bundle), batch_size=7))
    model, _ = checkpoint.load_model(ckpts["base"])
    tok = Tokenizer.load(ckpts["tok"])
    got = {r["task"]: r for r in rows}
    centered = []
    with torch.no_grad():
        for task in core.bundle_tasks(bundle):
            expected = nanochat_accuracy(model, tok, task)
            row = got[core.PREFIX + task["label"]]
            assert row["value"] == pytest.approx(expected), task["label"]
            assert row["baseline"] == task["baseline"] and row["centered"] == pytest.approx(
                core.centered(expected, task["baseline"])
            )
            centered.append(row["centered"])
    assert got["CORE"]["value"] == pytest.approx(sum(centered) / 3) and got["CORE"]["group"] == "core"
    assert any(0 < got[core.PREFIX + t]["value"] < 1 for t in ("my_mc", "my_schema"))
    assert info["tasks"] == ["core_my_mc", "core_my_schema", "core_my_lm"]


def test_core_limit_keeps_nanochats_first_items(tmp_path, tok):
    bundle = write_bundle(tmp_path / "bundle")
    names = core.write_tasks(bundle, tmp_path / "out", tok, limit=5)
    docs = [json.loads(line) for line in open(tmp_path / "out" / "core_my_mc.jsonl")]
    items = [json.loads(line) for line in open(bundle / "eval_data" / "mine" / "mc.jsonl")]
    random.Random(1337).shuffle(items)
    assert len(docs) == 5 and [d["gold"] for d in docs] == [i["gold"] for i in items[:5]]
    assert docs[0]["context"].endswith(items[0]["query"]) and docs[0]["context"].count("\n\n") == 3
    assert names == {"core_my_mc": 0.25, "core_my_schema": 0.5, "core_my_lm": 0.0}


# -- unreachable data, scores ------------------------------------------------------------


def test_hub_task_offline_says_dataset_not_reachable(ckpts, tmp_path, monkeypatch):
    """Every task whose data is out of reach is named in one error, before the model loads."""
    monkeypatch.setattr(core, "CACHE", tmp_path / "cache")
    bundle_url = f"http://127.0.0.1:{free_port()}/eval_bundle.zip"
    with pytest.raises(
        core.DatasetUnreachable, match="dataset not reachable for 2 task.*core .*CORE's eval bundle.*arc_easy"
    ):
        evaluate(ckpts["base"], ["core", "arc_easy"], BenchmarkConfig(core_bundle=bundle_url))


def test_core_bundle_unreachable_says_so(ckpts, tmp_path, monkeypatch):
    monkeypatch.setattr(core, "CACHE", tmp_path / "cache")
    url = f"http://127.0.0.1:{free_port()}/eval_bundle.zip"
    with pytest.raises(core.DatasetUnreachable, match="dataset not reachable: CORE's eval bundle"):
        core.eval_bundle(url, cache=tmp_path / "cache")
    assert not (tmp_path / "cache" / "eval_bundle").exists()


def test_unknown_task_is_a_clear_error(ckpts):
    with pytest.raises(KeyError, match="no_such_task"):
        evaluate(ckpts["base"], ["no_such_task"], BenchmarkConfig())


def lm_eval_results(values: dict[str, tuple[str, float]]) -> dict:
    """Results shaped as lm-eval's simple_evaluate returns them."""
    return {
        "results": {t: {"alias": t, m: v, m.replace(",", "_stderr,", 1): 0.01} for t, (m, v) in values.items()},
        "n-samples": {t: {"original": 100, "effective": 100} for t in values},
    }


def test_chatcore_is_the_mean_centered_accuracy_and_needs_humaneval(tmp_path):
    measured = {
        "arc_easy": ("acc,none", 0.40),
        "arc_challenge": ("acc,none", 0.28),
        "mmlu": ("acc,none", 0.25),
        "gsm8k": ("exact_match,strict-match", 0.05),
        "humaneval": ("pass@1,create_test", 0.09),
    }
    allowed = Plan(["chat"], BenchmarkConfig(allow_code_execution=True), None, tmp_path)
    rows = {r["task"]: r for r in score_rows(lm_eval_results(measured), allowed)}
    assert rows["arc_easy"]["centered"] == pytest.approx(0.2) and rows["mmlu"]["centered"] == pytest.approx(0.0)
    assert rows["gsm8k"]["centered"] == pytest.approx(0.05)
    expected = (0.2 + (0.28 - 0.25) / 0.75 + 0.0 + 0.05 + 0.09) / 5
    assert rows["ChatCORE"]["value"] == pytest.approx(expected)
    # Without the opt-in HumanEval is not run, and ChatCORE is not a number.
    plan = Plan(["chat"], BenchmarkConfig(), None, tmp_path)
    assert plan.run == ["arc_easy", "arc_challenge", "mmlu", "gsm8k"]
    measured.pop("humaneval")
    rows = {r["task"]: r for r in score_rows(lm_eval_results(measured), plan)}
    assert rows["humaneval"]["value"] is None and "not measured" in rows["humaneval"]["note"]
    assert rows["ChatCORE"]["value"] is None and "humaneval" in rows["ChatCORE"]["note"]


# -- the flow -------------------------------------------------------------------------------


def test_benchmark_flow_writes_a_dataset_with_lineage(prefect_server, ckpts, local_tasks, engine_route):
    from flows.benchmark import benchmark
    from models import lake as lakes
    from tasks.config import LakeConfig

    config = BenchmarkConfig(include_path=[local_tasks], batch_size=5)
    out = benchmark(
        checkpoint="base", lake=LakeConfig(root=ckpts["lake"]), config=config, tasks=["local_mc", "local_gen"]
    )
    assert out["results"] == lakes.join(ckpts["lake"], "evals", "base", "benchmarks", "step-000002")
    manifest = lakes.manifest(out["results"])
    assert manifest.kind == "benchmark-results" and manifest.parents == [ckpts["base"]]
    assert manifest.stats["scores"] == {"local_mc": engine_route["local_mc"][0], "local_gen": 0.5} == out["scores"]
    rows = lakes.read_shard(lakes.shard_uris(out["results"])[0]).to_pylist()
    assert {(r["task"], r["metric"]) for r in rows} == {("local_mc", "acc,none"), ("local_gen", "exact_match,strip")}
    assert all(r["samples"] in (24, 8) and r["stderr"] > 0 for r in rows)
    again = benchmark(
        checkpoint="base", lake=LakeConfig(root=ckpts["lake"]), config=config, tasks=["local_mc", "local_gen"]
    )
    assert again == out  # a cache hit: the same checkpoint, tasks and task files


def test_pipeline_benchmarks_the_stages_its_config_names(prefect_server, ckpts, local_tasks):
    from flows.pipeline import benchmarks
    from tasks.config import load_config

    config = load_config(
        "tiny",
        {"lake.root": ckpts["lake"], "benchmark.include_path": [local_tasks], "benchmark.after": {"sft": ["local_mc"]}},
    )
    out = {"pretrain": {"checkpoint": ckpts["base"]}, "sft": {"checkpoint": ckpts["chat"]}}
    for stage in ("pretrain", "sft"):
        benchmarks(out, stage, config)
    assert list(out["benchmark"]) == ["sft"]  # none by default: only the stage named
    done = out["benchmark"]["sft"]
    assert done["checkpoint"] == ckpts["chat"] and list(done["scores"]) == ["local_mc"]
    assert done["results"].endswith("evals/chat/benchmarks/step-000002")
