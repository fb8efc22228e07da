"""Supervised fine-tuning data: conversations, their schema, generators, probing and packing.

    schema.py     conversation rows (Parquet) and readers of users' JSONL/Parquet datasets
    templates.py  the words: question phrasings (training and held-out), answers
    requests.py   grammars of requests to decline (harmful, private) and their benign twins
    answers.py    the answer formats and their checks (extract_answer for RL, is_refusal)
    generate.py   the sources of generated conversations and their held-out splits
    surface.py    surface variation of user turns: greetings, context, typos, casing, spacing
    documents.py  questions from what the crawl's documents define (any crawl, no ground truth)
    probe.py      knowledge probing of the base model (Llama 3's "I don't know" recipe)
    pack.py       render (models/chat.py) and pack conversations into training rows

flows/sft.py runs them as Prefect tasks and trains; flows/evaluate.py measures the result.
"""

from __future__ import annotations

from pydantic import Field

from models.train import TrainConfig
from tasks.runtime import StageConfig

CODE = ("tasks.sft", "models.chat", "models.tools", "models.sft_data", "tasks.mathgen", "tasks.world")

# How many conversations each source writes for training (the held-out test sets are sized
# by the evaluation's needs; see generate.py).
DEFAULT_COUNTS = {
    "facts_search": 2,  # questions per fact (phrasings), not conversations
    "unknown": 1200,  # people, towns, organisations, things (see generate.unknown)
    "unknown_test": 120,  # half in the held-out question shapes
    "math": 400,
    "code_math": 400,  # the same training problems, solved with the code tool
    "math_test": 100,  # new seeds of the training families
    "math_heldout": 100,  # the held-out families (mathgen.HELDOUT_FAMILIES), test split only
    "arithmetic": 150,
    "arithmetic_test": 30,
    "private": 300,  # each with a benign twin of the same shape (generate.benign): no count of its own
    "harmful": 300,
    "refusal_test": 40,  # per group: in-distribution shapes, and as many of the held-out shapes
    "identity": 60,
    "echo": 4000,  # one to four names a row
    "doc_questions": 2,  # questions per definition a document states (phrasings)
    "doc_unknown": 400,
    "doc_unknown_test": 60,
}


class SFTConfig(StageConfig):
    name: str = Field("sft", description="Conversations go to conversations/{name}/, the model to checkpoints/{name}/")
    base: str | None = Field(
        None, description="Base checkpoint URI or run name under checkpoints/ (default: the pretrain run)"
    )
    seed: int = Field(0, description="Seeds every generator, the splits, the probe and the packing order")
    counts: dict[str, int] = Field(default_factory=lambda: dict(DEFAULT_COUNTS), description="Conversations per source")
    sources: list[str] = Field(
        default_factory=lambda: [
            "doc_questions",
            "doc_memory",
            "doc_unknown",
            "facts_search",
            "facts_memory",
            "unknown",
            "math",
            "code_math",
            "arithmetic",
            "private",
            "harmful",
            "benign",
            "identity",
            "professions",
            "echo",
        ],
        description="Generated sources to include (generate.SOURCES); the facts sources need the sample crawl's facts",
    )
    definitions: int = Field(
        3000, ge=0, description="Most definitions read from the crawl's documents (the doc_* sources' questions)"
    )
    math_difficulty: list[int] = Field(default_factory=lambda: [1, 2], description="mathgen difficulties, cycled")
    test_fraction: float = Field(
        0.2, gt=0, lt=1, description="Share of entities (people, organisations, towns) held out for evaluation"
    )
    surface_rate: float = Field(
        0.1,  # 0.3 coincided with tiny's math falling from 36.7% to 6.7% (docs/sft.md, surface variation)
        ge=0,
        le=1,
        description="Share of generated rows whose user turn is varied as people type: greetings, context, typos, "
        "casing, spacing (surface.py); 0 keeps every question clean",
    )
    val_fraction: float = Field(
        0.05, ge=0, lt=1, description="Share of training conversations kept for validation loss"
    )
    datasets: list[str] = Field(
        default_factory=list, description="Users' conversation datasets: JSONL or Parquet files, globs or lake datasets"
    )
    datasets_test_fraction: float = Field(
        0.05,
        ge=0,
        lt=1,
        description="Share of each user dataset held out (by id) for `evaluate`: its loss per assistant token",
    )
    datasets_share: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="Share of the training conversations drawn from users' datasets (repeated or thinned); none: as they come",
    )
    recall: bool = Field(
        False,
        description="Give a base model without recall the pointer of models/recall.py in context: it proposes words "
        "of the user's turns and search results while the model writes a query or its reply after a result",
    )
    search_results: int = Field(
        3, ge=1, le=10, description="Passages a search returns (also how the engine must search at inference)"
    )
    result_chars: int = Field(600, ge=80, description="Characters of search results the model reads")
    probe_samples: int = Field(4, ge=1, description="Samples per fact when probing the base model")
    probe_temperature: float = Field(0.7, gt=0)
    probe_tokens: int = Field(12, ge=1, description="Tokens sampled per probe")
    probe_chunk: int = Field(64, ge=1, description="Facts per probing task")
    nproc: int = Field(
        1, ge=1, description="Training processes on this node: >1 launches torchrun (one per GPU, DDP), as pretraining"
    )
    gpu_slots: int = Field(1, ge=1, description="Size of the `gpu` concurrency limit if a local run must create it")
    train: TrainConfig = Field(
        default_factory=lambda: TrainConfig(
            steps=300,
            batch_tokens=4096,
            device_batch=8,
            lr=1e-3,
            warmup_steps=10,
            eval_every=100,
            checkpoint_every=100,
            eval_tokens=16384,
        ),
        description="Trainer settings; the model (and its context) is the base checkpoint's",
    )
