"""Knowledge probing, as Llama 3 does it for factuality: ask the model what it knows first.

For each fact of the training entities, the base model continues a cloze prompt drawn from
the answer's own words ("Rudolf Abend works for the") several times, sampled with the
engine (one prefill, `samples` rows). A base model is not a chat model, so the question is
put the way it reads text; the judge is exact: does the continuation state the value
(answers.mentions)? Consistently right: the fact is "known" and SFT trains the answer.
Consistently wrong: "unknown", and SFT trains "I'm sorry, I don't believe I know." (Llama 3
generates refusals exactly there). In between, "unsure": trained neither way (Gekhman et al.
2024: fine-tuning on facts a model half knows teaches it to hallucinate).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from models.engine import Engine, sample_seed
from tasks.sft.answers import mentions
from tasks.sft.generate import Entity, fact_values, kinds_of

SCHEMA = pa.schema(
    [
        ("entity_id", pa.string()),
        ("attribute", pa.string()),
        ("prompt", pa.string()),
        ("value", pa.string()),
        ("samples", pa.list_(pa.string())),
        ("correct", pa.int32()),
        ("verdict", pa.string()),
    ]
)


def verdict(correct: int, samples: int) -> str:
    if correct == samples:
        return "known"
    return "unknown" if correct == 0 else "unsure"


def probe_items(entities: list[Entity]) -> list[dict[str, str]]:
    """(entity, attribute, cloze prompt, value) for every fact with a cloze; "who" is not
    probed itself (it is known when profession and birthplace are)."""
    items = []
    for entity in entities:
        for attribute, kind in kinds_of(entity).items():
            if kind.cloze:
                items.append(
                    {
                        "entity_id": entity.id,
                        "attribute": attribute,
                        "prompt": kind.cloze.format(name=entity.name),
                        "value": fact_values(entity, attribute)[0],
                    }
                )
    return items


def probe(
    engine: Engine,
    items: list[dict[str, str]],
    samples: int,
    temperature: float,
    max_new_tokens: int,
    seed: int,
    start: int = 0,
) -> list[dict[str, Any]]:
    """Probe rows (SCHEMA) for `items`, which are items start, start+1, ... of the whole list:
    item i's samples are seeded by (seed, i), so a retried chunk gives the same answers."""
    out = []
    tok = engine.tokenizer
    for i, item in enumerate(items, start):
        prompt = [tok.bos_id, *tok.encode(item["prompt"])]
        options = dict(max_new_tokens=max_new_tokens, temperature=temperature, top_k=50, seed=sample_seed(seed, i))
        texts = [s.text for s in engine.generate(prompt, samples, **options)]
        correct = sum(mentions(t, item["value"]) for t in texts)
        out.append({**item, "samples": texts, "correct": correct, "verdict": verdict(correct, samples)})
    return out


def verdicts(rows: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    """(entity, attribute) -> verdict, with "who" derived from profession and birthplace."""
    found = {(r["entity_id"], r["attribute"]): r["verdict"] for r in rows}
    for entity_id in {e for e, _ in found}:
        parts = [found.get((entity_id, a)) for a in ("profession", "birthplace")]
        if None not in parts:  # the answer states both: wrong if either part is
            found[(entity_id, "who")] = (
                "unknown" if "unknown" in parts else "known" if set(parts) == {"known"} else "unsure"
            )
    return found
