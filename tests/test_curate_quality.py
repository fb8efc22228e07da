"""The quality step (tasks/curate/quality.py) and `crawl2chat quality train`, on real pages.

The models are built here, nothing is downloaded: a fastText classifier trained by the
project's trainer on the extraction benchmark's article bodies against a curated crawl of
other pages, and a small randomly initialised BERT regression head (FineWeb-Edu's classifier
has the same shape: one output, a score) with a WordPiece vocabulary trained on the pages.
"""

from __future__ import annotations

import gzip
import json
import math
import time

import numpy as np
import pyarrow as pa
import pytest

from benchmarks.curate import build_warc
from flows.curate import curate
from flows.quality import quality_train
from models import lake
from tasks.config import LakeConfig
from tasks.curate import quality
from tasks.curate.chain import Funnel
from tasks.curate.config import CurateConfig, QualityConfig
from tasks.curate.stage import CLEAN_SCHEMA, quality_shard_fn
from tasks.quality_train import QualityTrainConfig, heldout_table, roc_auc
from tasks.runtime import RunnerConfig

pytestmark = pytest.mark.slow

CRAWLED = 48  # pages curated as the crawl; the other 133 pages' article bodies are the positives
CONFIG = CurateConfig(extract={"extractor": "resiliparse"}, dedup_enabled=False)
TRAIN = QualityTrainConfig(name="articles", dim=32, bucket=20_000)  # a smaller model: faster to write


@pytest.fixture(scope="module")
def pages(shared_data) -> list[tuple[str, str, bytes]]:
    data = shared_data / "extraction-benchmark"
    truth = json.loads((data / "ground-truth.json").read_text())
    return [
        (key, truth[key]["url"], gzip.decompress((data / "html" / f"{key}.html.gz").read_bytes()))
        for key in sorted(truth)
    ]


@pytest.fixture(scope="module")
def crawl_files(pages, tmp_path_factory) -> dict[str, list[str]]:
    """The first CRAWLED pages as one WARC file, and the same pages as three files."""
    root = tmp_path_factory.mktemp("warcs")
    build_warc(pages[:CRAWLED], root / "one" / "all.warc.gz")
    thirds = [pages[i:CRAWLED:3] for i in range(3)]
    for i, part in enumerate(thirds):
        build_warc(part, root / "three" / f"part-{i}.warc.gz")
    return {
        "one": [str(root / "one" / "all.warc.gz")],
        "three": sorted(str(p) for p in (root / "three").glob("*.warc.gz")),
    }


@pytest.fixture(scope="module")
def positives(pages, shared_data, tmp_path_factory) -> str:
    truth = json.loads((shared_data / "extraction-benchmark" / "ground-truth.json").read_text())
    path = tmp_path_factory.mktemp("positives") / "articles.jsonl"
    lines = [json.dumps({"text": truth[key]["articleBody"]}) for key, _, _ in pages[CRAWLED:]]
    path.write_text(
        "\n".join(lines + ["", "not json", json.dumps({"body": "no text column"}), json.dumps({"text": ""})]) + "\n"
    )
    return str(path)


@pytest.fixture(scope="module")
def trained(prefect_server, crawl_files, positives, tmp_path_factory) -> dict:
    """A crawl curated without the quality step, and a classifier trained against it."""
    root = str(tmp_path_factory.mktemp("trained") / "lake")
    base = curate(
        warcs=crawl_files["one"], lake=LakeConfig(root=root), config=CONFIG.model_copy(update={"crawl": "negatives"})
    )
    result = quality_train(positives=[positives], lake=LakeConfig(root=root), config=TRAIN, crawl="negatives")
    return {"root": root, "base": base, "result": result}


@pytest.fixture(scope="module")
def bert_folder(pages, tmp_path_factory) -> str:
    """A randomly initialised 2-layer BERT with a one-output (regression) head, and a WordPiece
    vocabulary trained on the pages' text, saved as a transformers model folder."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    from tasks.curate.extract import extract_function

    extract = extract_function({"extractor": "resiliparse"})
    texts = [extract(html.decode("utf-8", "replace")) or "" for _, _, html in pages[:60]]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(
        texts, trainers.WordPieceTrainer(vocab_size=2000, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    torch.manual_seed(0)
    model = BertForSequenceClassification(
        BertConfig(
            vocab_size=tok.get_vocab_size(),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=128,
            num_labels=1,
        )
    )
    folder = tmp_path_factory.mktemp("bert") / "tiny-edu-classifier"
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    return str(folder)


def midpoint_threshold(scores: list[float]) -> float:
    """A threshold in the widest gap between scores of the middle half: about half kept, and
    no score within float noise of it (so batching cannot flip a decision)."""
    s = sorted(scores)
    k = max(range(len(s) // 4, 3 * len(s) // 4), key=lambda i: s[i + 1] - s[i])
    assert s[k + 1] - s[k] > 1e-4, f"the middle scores are too close to split: {s}"
    return (s[k] + s[k + 1]) / 2


def outcomes(result: dict) -> dict[str, tuple[str | None, float | None]]:
    """id -> (removing step or None, quality score) over clean and removed."""
    out = {r["id"]: (None, r["quality_score"]) for r in lake.scan(result["clean_uri"]).collect().to_dicts()}
    for r in lake.scan(result["removed_uri"]).collect().to_dicts():
        out[r["id"]] = (r["step"], r["quality_score"])
    return out


# -- training ------------------------------------------------------------------------------


def test_train_writes_model_manifest_and_heldout_table(trained, positives):
    result = trained["result"]
    manifest = lake.manifest(result["uri"])
    assert manifest.kind == quality.TRAINED_KIND
    stats = manifest.stats
    # 133 article bodies, each unique and non-empty; the four bad lines are counted, not used
    assert stats["positives"] == 181 - CRAWLED
    assert stats["positives_skipped"] == {"not a JSON object": 1, "no 'text' string": 1, "too short": 1}
    assert stats["train"]["positives"] + stats["held_out"]["positives"] == stats["positives"]
    assert stats["train"]["negatives"] + stats["held_out"]["negatives"] == stats["negatives"]
    clean = lake.scan(trained["base"]["clean_uri"]).collect()
    assert stats["negatives"] == min(clean.height, stats["positives"])
    assert [r["threshold"] for r in stats["heldout"]] == QualityTrainConfig().thresholds
    recalls = [r["recall"] for r in stats["heldout"]]
    kept = [r["negatives_kept"] for r in stats["heldout"]]
    assert recalls == sorted(recalls, reverse=True) and kept == sorted(kept, reverse=True)
    assert stats["roc_auc"] > 0.5  # article bodies are told from curated pages better than chance
    # the table is the one the chain's scorer gives on the held-out texts
    table = lake.read_shard(lake.shard_uris(result["uri"])[0]).to_pylist()
    assert table == stats["heldout"]
    report = lake.filesystem(result["uri"])[1] + "/report.md"
    assert "| threshold | precision | recall |" in open(report).read()
    from prefect.artifacts import Artifact

    assert '"precision"' in Artifact.get("quality-heldout").data


def test_training_is_deterministic(trained, positives, tmp_path):
    """Same data, seed and config (one thread): the same model, byte for byte."""
    from tasks.quality_train import train_quality_model

    again = train_quality_model.fn([positives], trained["base"]["clean_uri"], str(tmp_path / "m"), TRAIN)
    assert again["stats"]["model_sha256"] == lake.manifest(trained["result"]["uri"]).stats["model_sha256"]


def test_heldout_table_and_auc_by_hand():
    pos, neg = np.array([0.9, 0.6, 0.4]), np.array([0.7, 0.2, 0.1, 0.05])
    rows = {r["threshold"]: r for r in heldout_table(pos, neg, [0.5, 0.6, 0.95])}
    assert rows[0.5]["precision"] == pytest.approx(2 / 3) and rows[0.5]["recall"] == pytest.approx(2 / 3)
    assert rows[0.6]["recall"] == pytest.approx(2 / 3)  # a score equal to the threshold is kept
    assert rows[0.95]["precision"] is None and rows[0.95]["f1"] == 0.0  # nothing kept: not measurable
    assert roc_auc(pos, neg) == pytest.approx(10 / 12)  # of the 12 pairs, 0.6 and 0.4 lose to 0.7
    assert roc_auc(np.array([0.5]), np.array([0.5])) == 0.5


# -- the step in the flow -----------------------------------------------------------------


def run(root: str, warcs: list[str], q: QualityConfig, runner: RunnerConfig = RunnerConfig()) -> dict:
    return curate(
        warcs=warcs,
        lake=LakeConfig(root=root),
        config=CONFIG.model_copy(update={"crawl": "c"}),
        runner=runner,
        quality=q,
    )


def check_decisions(result: dict, q: QualityConfig) -> dict[str, tuple[str | None, float | None]]:
    got = outcomes(result)
    scored = {k: v for k, v in got.items() if v[1] is not None}
    assert scored, "nothing was scored"
    for step, score in scored.values():  # every document that reached the step has its score
        assert (step is None) == (score >= q.threshold) and step in (None, "quality")
    assert all(step not in (None, "quality") for step, score in got.values() if score is None)
    kept, removed = sum(s is None for s, _ in scored.values()), sum(s == "quality" for s, _ in scored.values())
    assert kept and removed
    funnel = lake.manifest(result["clean_uri"]).stats["funnel"]
    assert (funnel["steps"]["quality"]["docs_in"], funnel["steps"]["quality"]["docs_out"]) == (len(scored), kept)
    assert funnel["steps"]["quality"]["reasons"] == {"below_threshold": removed}
    assert sum(funnel["histograms"]["quality"].values()) == len(scored)
    report = lake.filesystem(result["report"])[0].cat_file(lake.filesystem(result["report"])[1]).decode()
    assert "## Quality scores" in report and "### quality" in report
    return got


@pytest.mark.parametrize("kind", ["fasttext", "transformers"])
def test_quality_step_same_decisions_whatever_runner_and_sharding(kind, trained, bert_folder, crawl_files, tmp_path):
    model = trained["result"]["uri"] if kind == "fasttext" else bert_folder
    texts = lake.scan(trained["base"]["filtered_uri"]).collect()["text"].to_list()  # what the step will score
    threshold = midpoint_threshold(quality.scorer(QualityConfig(model=model)).score(texts).tolist())
    q = QualityConfig(model=model, threshold=threshold, batch_size=4)
    # one file on one thread; the same pages in three files over two Dask worker processes
    first = check_decisions(run(str(tmp_path / "a"), crawl_files["one"], q, RunnerConfig(max_workers=1)), q)
    sharded = check_decisions(
        run(str(tmp_path / "b"), crawl_files["three"], q, RunnerConfig(kind="dask", max_workers=2)), q
    )
    assert {k: v[0] for k, v in first.items()} == {k: v[0] for k, v in sharded.items()}
    for doc_id, (_, score) in first.items():
        if score is not None:  # fastText: exact; transformers: other batches, other padding
            assert sharded[doc_id][1] == pytest.approx(score, abs=0 if kind == "fasttext" else 1e-5)


def test_threshold_change_misses_the_cache_for_the_quality_step_only(trained, crawl_files, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    root = str(tmp_path / "lake")
    model = trained["result"]["uri"]

    def task_states(q: QualityConfig) -> dict[str, str]:
        state = curate(
            warcs=crawl_files["three"],
            lake=LakeConfig(root=root),
            config=CONFIG.model_copy(update={"crawl": "c"}),
            quality=q,
            return_state=True,
        )
        runs: list = []
        with get_client(sync_client=True) as client:
            for _ in range(120):  # task-run states reach the server as events, a little after the run
                runs = client.read_task_runs(
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
                )
                named = [r for r in runs if r.name.startswith(("curate-", "quality-", "finalize-"))]
                if len(named) == 9 and all(r.state is not None and r.state.is_final() for r in named):
                    break
                time.sleep(0.5)
        return {r.name: r.state.name for r in runs if r.state is not None}

    task_states(QualityConfig(model=model, threshold=0.3))
    states = task_states(QualityConfig(model=model, threshold=0.6))
    curate_tasks = {n: s for n, s in states.items() if n.startswith("curate-")}
    quality_tasks = {n: s for n, s in states.items() if n.startswith("quality-")}
    assert len(curate_tasks) == len(quality_tasks) == 3
    assert set(curate_tasks.values()) == {"Cached"}, states
    assert set(quality_tasks.values()) == {"Completed"}, states
    same = task_states(QualityConfig(model=model, threshold=0.6))
    assert {s for n, s in same.items() if n.startswith(("curate-", "quality-"))} == {"Cached"}


# -- the step on one shard: threshold edges -----------------------------------------------


def test_threshold_edges_on_one_shard(trained, tmp_path):
    filtered = lake.shard_uris(trained["base"]["filtered_uri"])[0]
    model = trained["result"]["uri"]
    scores = quality.scorer(QualityConfig(model=model)).score(lake.read_shard(filtered)["text"].to_pylist())
    edge = float(scores[0])  # a real score, as the step compares it

    def decide(threshold: float) -> dict:
        out = quality_shard_fn(
            filtered, "s", str(tmp_path / "q"), str(tmp_path / "r"), QualityConfig(model=model, threshold=threshold)
        )
        rows = lake.read_shard(str(tmp_path / "q" / out["kept"]["path"])).to_pylist()
        gone = lake.read_shard(str(tmp_path / "r" / out["removed"]["path"])).to_pylist()
        return {"kept": {r["id"] for r in rows}, "removed": {r["id"]: r for r in gone}, "out": out}

    first_id = lake.read_shard(filtered)["id"][0].as_py()
    at = decide(edge)
    assert first_id in at["kept"]  # score == threshold: kept
    above = decide(float(np.nextafter(np.float32(edge), np.float32(np.inf))))
    assert first_id in above["removed"]  # the next float up: removed, with its step, reason and score
    row = above["removed"][first_id]
    assert (row["step"], row["reason"], row["quality_score"]) == ("quality", "below_threshold", pytest.approx(edge))
    assert len(at["kept"]) + len(at["removed"]) == len(scores)
    assert set(pa.Table.from_pylist([], schema=CLEAN_SCHEMA).column_names) <= set(row)


# -- pieces --------------------------------------------------------------------------------


def test_histogram_bins_edges_and_merge():
    h = quality.Histogram(0.0, 1.0, 4)
    for s in (-0.1, 0.0, 0.2499, 0.25, 0.99, 1.0, 7.0, math.nan):
        h.add(s)
    assert h.counts == {
        "< 0": 1,
        "[0, 0.25)": 2,
        "[0.25, 0.5)": 1,
        "[0.5, 0.75)": 0,
        "[0.75, 1)": 1,
        ">= 1": 2,
        "no score": 1,
    }
    a, b = Funnel(), Funnel()
    a.histograms["quality"], b.histograms["quality"] = dict(h.counts), dict(h.counts)
    merged = Funnel.merge([a.to_dict(), b.to_dict()])["histograms"]["quality"]
    assert list(merged) == list(h.counts) and merged["no score"] == 2 and merged[">= 1"] == 4


def test_resolve_names_each_kind_of_model(trained, bert_folder, tmp_path):
    hub = quality.resolve(QualityConfig(model="HuggingFaceFW/fineweb-edu-classifier", revision="abc"))
    assert (hub.kind, hub.hub, hub.identity) == ("transformers", True, "hub:HuggingFaceFW/fineweb-edu-classifier@abc")
    with pytest.raises(ValueError, match="not a hub name"):
        quality.resolve(QualityConfig(model="HuggingFaceFW/fineweb-edu-classifier", kind="fasttext"))
    lake_model = quality.resolve(QualityConfig(model=trained["result"]["uri"]))
    assert lake_model.kind == "fasttext" and lake_model.uri.endswith(trained["result"]["model_file"])
    assert quality.resolve(QualityConfig(model=lake_model.uri)).kind == "fasttext"
    folder = quality.resolve(QualityConfig(model=bert_folder))
    assert folder.kind == "transformers" and not folder.hub
    with pytest.raises(FileNotFoundError):
        quality.resolve(QualityConfig(model=str(tmp_path / "missing.bin")))
    with pytest.raises(ValueError, match="not a quality model"):
        quality.resolve(QualityConfig(model=trained["base"]["clean_uri"]))
    (tmp_path / "weights.pt").write_bytes(b"x")
    with pytest.raises(ValueError, match="set quality.kind"):
        quality.resolve(QualityConfig(model=str(tmp_path / "weights.pt")))


def test_models_in_an_s3_lake_score_as_the_local_ones(trained, bert_folder, s3_bucket):
    """A transformers folder and a fastText file in the lake on S3 are fetched once (into the
    temp folder, under their identity) and score exactly as the local copies do."""
    texts = lake.scan(trained["base"]["filtered_uri"]).collect()["text"].to_list()[:6]
    fs, bucket = lake.filesystem(s3_bucket)
    fs.put(bert_folder, f"{bucket}/models/bert", recursive=True)
    fasttext_file = quality.resolve(QualityConfig(model=trained["result"]["uri"])).uri
    fs.put(fasttext_file, f"{bucket}/models/quality.bin")
    fs.invalidate_cache()
    for local, remote in (
        (bert_folder, f"{s3_bucket}/models/bert"),
        (fasttext_file, f"{s3_bucket}/models/quality.bin"),
    ):
        ref = quality.resolve(QualityConfig(model=remote))
        assert ref.uri.startswith("s3://") and ref.kind == quality.resolve(QualityConfig(model=local)).kind
        assert quality.local_path(ref) == quality.local_path(ref)  # fetched once
        np.testing.assert_array_equal(
            quality.scorer(QualityConfig(model=remote)).score(texts),
            quality.scorer(QualityConfig(model=local)).score(texts),
        )


def test_missing_trainer_says_how_to_install_it(tmp_path, monkeypatch):
    from tasks import quality_train

    monkeypatch.setattr(quality_train, "TRAINER_DIR", tmp_path / "nothing-here")
    with pytest.raises(RuntimeError, match="make fasttext-trainer"):
        quality_train.train_fasttext(["__label__hq a b c"], str(tmp_path / "m.bin"), QualityTrainConfig())
