"""A tiny lake for the SFT and evaluation tests: a small fictional world's facts, its
encyclopedia pages in a real search index, a tokenizer trained on them, and a base
checkpoint of a small GPT. Built with the project's own code in about a second."""

from __future__ import annotations

import random
from dataclasses import asdict

import pyarrow as pa
import torch

from models import checkpoint, lake
from models.gpt import GPT, GPTConfig
from models.tokenizer import Tokenizer, train
from tasks.sample_crawl.encyclopedia import org_article, person_article, town_article
from tasks.search import SearchConfig, build_index, split_shard
from tasks.world import World, build_world

CRAWL = "tiny"
SEQ_LEN = 256
MODEL = GPTConfig(vocab_size=512, seq_len=SEQ_LEN, n_layer=2, n_head=2, n_kv_head=2, n_embd=32)


def world() -> World:
    return build_world(seed=3, people=15)


def pages(w: World) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """(url, text, facts stated) per encyclopedia page."""
    out = []
    for entity, write in (
        [(p, person_article) for p in w.people]
        + [(t, town_article) for t in w.towns]
        + [(o, org_article) for o in w.orgs]
    ):
        article = write(w, entity, random.Random(entity.id))
        url = f"https://wiki.example/{entity.id}"
        out.append((url, "\n".join(b.text for b in article.blocks), article.facts))
    return out


def tokenizer(w: World) -> Tokenizer:
    texts = [text for _, text, _ in pages(w)]
    chat = ["I'm sorry, I don't believe I know.", "Answer: 42", "What is 12 * 34? 12 * 34 = 408.", "no results"]
    return train((texts + chat) * 3, MODEL.vocab_size)


def build(root: str) -> dict[str, str]:
    """Write the tiny lake under `root`; returns the URIs the tests use."""
    w = world()
    written = pages(w)
    facts = [
        {"entity_id": e, "name": w.name(e), "attribute": a, "value": w.facts(e)[a], "url": url}
        for url, _, stated in written
        for e, a in stated
    ]
    facts_uri = lake.join(root, "crawls", CRAWL, "facts")
    lake.write_dataset(facts_uri, [pa.Table.from_pylist(facts)], kind="crawl-facts")
    clean_uri = lake.join(root, "curated", CRAWL, "clean")
    docs = [{"id": f"<urn:uuid:{i}>", "url": url, "text": text} for i, (url, text, _) in enumerate(written)]
    lake.write_dataset(clean_uri, [pa.Table.from_pylist(docs)], kind="curated")

    search_uri = lake.join(root, "search", CRAWL)
    config = SearchConfig(passage_chars=200)
    part = split_shard.fn(lake.shard_uris(clean_uri)[0], search_uri, "part-00000", config)
    build_index.fn(clean_uri, search_uri, [part], config)

    tok_uri = lake.join(root, "tokenizers", "tiny")
    tok = tokenizer(w)
    tok.save(tok_uri)
    lake.commit(tok_uri, [], kind="tokenizer", parents=[clean_uri])  # trained on the crawl, as the stage's is

    torch.manual_seed(0)
    model = GPT(MODEL)
    base = checkpoint.save(
        lake.join(root, "checkpoints", "base"),
        0,
        model=model.state_dict(),
        config={"model": asdict(MODEL), "tokenizer": tok_uri},
        lineage={"parents": [tok_uri]},  # what `sft` without a crawl finds the crawl by
    )
    return {
        "root": root,
        "facts": facts_uri,
        "search": search_uri,
        "tokenizer": tok_uri,
        "base": base,
        "clean": clean_uri,
    }
