"""Where everything lives in the lake: the one place that builds lake paths.

    crawls/{crawl}/                      the sample crawl's WARC files, truth and facts
    curated/{crawl}/{filtered,removed,clean}, report.md
    dedup/{crawl}/..., dedup/index/{crawl}
    search/{crawl}                       the search tool's index (search/{run} for a run over several crawls)
    tokenizers/{run}/{name}
    tokens/{run}/{name}/{crawl}/{train,val}  (the tokenizer's name under tokenizers/, then the crawl)
    checkpoints/{run}/{stage}/step-N     stage: the pretrain, sft or rl config's name
    conversations/{run}/{stage}/...
    rollouts/{run}/{stage}/...
    evals/{run}/{stage}/step-N
    reports/{run}/
    _prefect/flow-results/{flow run}.json, _prefect/results/   Prefect's results (the task cache)

Up to curation a dataset belongs to its crawl (shared by every run that reads the crawl);
after it, everything is named by the run (`--run`, default the crawl's name), so two crawls or
two configs on one crawl never write the same path. A stage flow called on its own, without a
run, keeps its stage name at the top (`checkpoints/{stage}`), as `crawl2chat pretrain` always did.

Flows, tasks and commands ask a `Layout` for paths and never build one by string surgery;
`model` resolves what a user types ("a run name or a URI") and `search_for` finds the search
index a model was trained with from its lineage.
"""

from __future__ import annotations

import os
import re
from collections import deque
from dataclasses import dataclass
from pathlib import PurePosixPath

from models import lake
from models.hashing import hash64

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_KEY_UNSAFE = re.compile(r"[^a-z0-9-]+")
MODEL_STAGES = ("rl", "sft", "base")  # a run's models, the most trained first
SEARCH_KIND = "search-index"
CONVERSATIONS_KIND = "conversations"  # tasks/sft/stage.py
CLEAN_KIND = "curated"  # flows/curate.py: the clean dataset


def safe_name(raw: str) -> str:
    """A name safe for lake paths and Prefect keys (crawls and runs)."""
    name = _UNSAFE.sub("-", raw).strip("-.")
    if not name:
        raise ValueError(f"no usable name in {raw!r}")
    return name


def artifact_key(key: str, name: str | None = None) -> str:
    """A Prefect artifact key for `name`'s copy of `key` (keys take lowercase letters, digits
    and dashes): one run's `evaluate-before-after` never replaces another's."""
    if not name:
        return key
    return f"{key}-{_KEY_UNSAFE.sub('-', name.lower()).strip('-')}"


@dataclass(frozen=True)
class Curated:
    base: str
    filtered: str
    removed: str
    clean: str
    report: str
    quality: str  # the documents the quality step kept (when it is on)


@dataclass(frozen=True)
class Layout:
    root: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", lake.normalize(self.root))

    def _at(self, *parts: str | None) -> str:
        return lake.join(self.root, *(p for p in parts if p))

    # -- a crawl's datasets (shared by the runs that read it) --------------------------------

    def crawl(self, crawl: str) -> str:
        return self._at("crawls", crawl)

    def facts(self, crawl: str) -> str:
        return self._at("crawls", crawl, "facts")

    def curated(self, crawl: str) -> Curated:
        base = self._at("curated", crawl)
        return Curated(base, *(lake.join(base, n) for n in ("filtered", "removed", "clean", "report.md", "quality")))

    def quality_model(self, name: str) -> str:
        """quality/{name}: a classifier `crawl2chat quality train` wrote."""
        return self._at("quality", name)

    def dedup(self, crawl: str, part: str) -> str:
        if crawl == "index":  # dedup/index/ is the index's folder, not a crawl's
            raise ValueError("a crawl cannot be named 'index' (dedup/index holds the dedup index)")
        return self._at("dedup", crawl, part)

    def dedup_root(self) -> str:
        return self._at("dedup")

    def dedup_index(self, crawl: str | None = None) -> str:
        if crawl == "index":
            raise ValueError("a crawl cannot be named 'index' (dedup/index holds the dedup index)")
        return self._at("dedup", "index", crawl)

    def search(self, name: str) -> str:
        """The search index of a crawl, or of a run over several crawls."""
        return self._at("search", name)

    def crawls(self) -> list[str]:
        """Every crawl the lake has curated (a committed clean dataset), by name."""
        found = lake.list_datasets(self._at("curated"))
        return sorted(self.crawl_of(u) for u in found if self._relative(u, "curated").endswith("/clean"))

    def crawl_of(self, clean: str) -> str:
        """The crawl whose `curated/{crawl}/clean` this is."""
        try:
            rel = self._relative(clean, "curated")
        except ValueError:
            rel = ""
        crawl, sep, rest = rel.partition("/")
        if not sep or rest != "clean":
            raise ValueError(
                f"{clean} is not a curated clean dataset of this lake ({self._at('curated')}/CRAWL/clean): name its crawl"
            )
        return crawl

    # -- a run's datasets ---------------------------------------------------------------------

    def tokenizer(self, run: str | None, name: str) -> str:
        return self._at("tokenizers", run, name)

    def tokens(self, tokenizer: str, crawl: str) -> str:
        """Where `crawl`'s tokens by `tokenizer` (a URI under tokenizers/) go."""
        return self._at("tokens", self._relative(tokenizer, "tokenizers"), crawl)

    def packed_rows(self, conversations: str, tokenizer: str, seq_len: int, split: str) -> str:
        """SFT rows of `conversations` rendered by `tokenizer` into rows of `seq_len` + 1."""
        name = self._relative(tokenizer, "tokenizers").replace("/", "-")
        return lake.join(conversations, "rows", f"{name}-{seq_len}", split)

    def checkpoints(self, run: str | None, stage: str) -> str:
        return self._at("checkpoints", run, stage)

    def conversations(self, run: str | None, stage: str) -> str:
        return self._at("conversations", run, stage)

    def rollouts(self, run: str | None, stage: str) -> str:
        return self._at("rollouts", run, stage)

    def evals(self, checkpoint: str, elsewhere: str | None = None) -> str:
        """evals/{run}/{stage}/step-N for checkpoints/{run}/{stage}/step-N on its own held-out
        set and index; evals/{run}/{stage}/on-{elsewhere}/step-N on another's
        (`held_out_elsewhere`), so that neither evaluation replaces the other."""
        *model, step = self.model_name(checkpoint).split("/")
        return self._at("evals", *model, *([f"on-{elsewhere}"] if elsewhere else []), step)

    def held_out_elsewhere(self, checkpoint: str, conversations: str | None, search: str | None) -> str | None:
        """What an evaluation asks that is not the model's own: the held-out set's name
        (`docs-sft`: conversations/docs/sft/test) when it is not the one the model was trained
        beside (for a base model: its run's `sft` set, the pipeline's "before"), and
        `index-{name}` when the search index is not the model's; None when both are its own."""
        parts = []
        name = self.model_name(checkpoint).split("/")
        own = self.conversations_for(checkpoint) or self._at("conversations", *name[:-2], "sft", "test")
        if conversations is not None and lake.normalize(conversations).rstrip("/") != own:
            uri = lake.normalize(conversations).rstrip("/")
            try:
                parts.append(self._relative(uri, "conversations").removesuffix("/test").replace("/", "-"))
            except ValueError:  # a dataset outside this lake's conversations/: named by its address
                parts.append(f"external-{hash64(uri):016x}"[:17])
        # The index is news when it is neither the model's nor the one the held-out set was written with.
        usual = {
            lake.normalize(u)
            for u in (self.search_for(checkpoint), conversations and self._search_of(conversations))
            if u
        }
        if search is not None and usual and lake.normalize(search) not in usual:
            parts.append("index-" + self._relative(search, "search").replace("/", "-"))
        return "-".join(parts) or None

    def benchmarks(self, checkpoint: str) -> str:
        """evals/{run}/{stage}/benchmarks/step-N: lm-evaluation-harness scores of that checkpoint."""
        *model, step = self.model_name(checkpoint).split("/")
        return self._at("evals", *model, "benchmarks", step)

    def reports(self, run: str | None) -> str:
        return self._at("reports", run or "pipeline")

    def flow_result(self, flow_run_id: object) -> str:
        """A deployment run's return value, for its parent flow (flows/dispatch.py)."""
        return self._at("_prefect", "flow-results", f"{flow_run_id}.json")

    def task_results(self) -> str:
        """Where Prefect persists task results (the cache) for this lake."""
        return self._at("_prefect", "results")

    # -- names and resolvers --------------------------------------------------------------------

    def _relative(self, uri: str, kind: str) -> str:
        base = self._at(kind) + "/"
        uri = lake.normalize(uri).rstrip("/")
        if not uri.startswith(base):
            raise ValueError(f"{uri} is not under {base} in this lake")
        return uri[len(base) :]

    def model_name(self, checkpoint: str) -> str:
        """`run/stage/step-N` (or `stage/step-N`) of a checkpoint under checkpoints/."""
        return self._relative(checkpoint, "checkpoints")

    def is_uri(self, ref: str) -> bool:
        """A URI or an explicit local path, as opposed to a name in the lake."""
        return "://" in ref or ref.startswith(("/", "./", "../", "~"))

    def model(self, ref: str) -> str:
        """A committed checkpoint from what a user types: a URI (a checkpoint or run folder, its
        newest step) or a name under checkpoints/: `run/stage`, `stage`, or a run alone (its
        most trained model: rl, else sft, else base); last, a relative local path."""
        from models import checkpoint as checkpoints

        if self.is_uri(ref):
            return checkpoints.resolve(lake.normalize(ref))
        folder = self._at("checkpoints", *ref.strip("/").split("/"))
        if checkpoints.latest(folder) is not None or lake.exists(folder):
            return checkpoints.resolve(folder)
        for stage in MODEL_STAGES:
            if checkpoints.latest(lake.join(folder, stage)) is not None:
                return checkpoints.resolve(lake.join(folder, stage))
        if os.path.exists(ref):  # a relative path without ./ (the lake's names come first)
            return checkpoints.resolve(lake.normalize(ref))
        raise FileNotFoundError(
            f"no model {ref!r}: no committed checkpoint under {folder} (give a run, run/stage or a URI)"
        )

    def _ancestors(self, uri: str):
        """Every committed dataset or checkpoint `uri` comes from (itself first), nearest first."""
        seen, queue = set(), deque([lake.normalize(uri)])
        while queue:
            uri = queue.popleft()
            if uri in seen:
                continue
            seen.add(uri)
            found = lake.read_manifest(uri)
            if found is not None:
                yield uri, found
                queue.extend(found.parents)

    def _run_of(self, checkpoint: str) -> str | None:
        """The run a checkpoint under checkpoints/{run}/{stage}/step-N belongs to, if any."""
        try:
            name = self.model_name(checkpoint).split("/")
        except ValueError:  # a checkpoint outside this lake's checkpoints/
            return None
        return name[0] if len(name) == 3 else None

    def conversations_for(self, checkpoint: str) -> str | None:
        """The held-out (test) split of the SFT conversations a model was trained on; for a
        model trained before SFT (a base), its run's SFT set, where the run has one."""
        for uri, found in self._ancestors(checkpoint):
            if found.kind == CONVERSATIONS_KIND:
                return lake.join(
                    self._at("conversations"), str(PurePosixPath(self._relative(uri, "conversations")).parent), "test"
                )
        run = self._run_of(checkpoint)
        own = run and self._at("conversations", run, "sft", "test")
        return own if own and lake.exists(own) else None

    def crawls_of(self, checkpoint: str) -> list[str]:
        """The crawls whose clean documents a model (or dataset) comes from, by name."""
        return sorted({self.crawl_of(uri) for uri, found in self._ancestors(checkpoint) if found.kind == CLEAN_KIND})

    def _search_of(self, uri: str) -> str | None:
        """The nearest search index among `uri`'s ancestors (itself included), if any."""
        return next((u for u, found in self._ancestors(uri) if found.kind == SEARCH_KIND), None)

    def search_for(self, checkpoint: str) -> str | None:
        """The search index a model was trained with, found in its lineage: the nearest
        ancestor that is a search index, else the index of the one crawl it was trained on,
        else its run's index (a run of several crawls); None when none exists."""
        nearest = self._search_of(checkpoint)
        if nearest is not None:
            return nearest
        crawls = self.crawls_of(checkpoint)
        if len(crawls) == 1 and lake.exists(self.search(crawls[0])):
            return self.search(crawls[0])
        run = self._run_of(checkpoint)  # a run of several crawls indexes them as one, by its name
        return self.search(run) if run and lake.exists(self.search(run)) else None
