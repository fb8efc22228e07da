"""Train the BPE tokenizer on a sample of a crawl's clean documents: `tokenizers/{run}/{name}/`."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from models.tokenizer import Tokenizer
from tasks.config import LakeConfig
from tasks.layout import Layout, artifact_key
from tasks.runtime import declare, in_lake
from tasks.tokenize import TokenizeConfig, TokenizerConfig, train_tokenizer

EXAMPLE = "The model's reply:\n\n    def area(r):\n        return 3.14159 * r ** 2\n\n<|assistant_end|> — café, 東京 🙂"


def _report(uri: str, stats: dict[str, Any]) -> str:
    tok = Tokenizer.load(uri)
    pieces = " ".join(f"`{tok.id_to_piece(i)}`" for i in tok.encode(EXAMPLE))
    specials = ", ".join(f"{name} = {i}" for name, i in tok.specials.items())
    longest = sorted(range(tok.vocab_size), key=lambda i: -int(tok.token_bytes[i]))[:10]
    return "\n".join(
        [
            f"# Tokenizer `{uri}`",
            "",
            "| | |",
            "|---|---|",
            f"| vocabulary | {stats['vocab_size']:,} (256 byte tokens, {len(tok.specials)} specials) |",
            f"| sample | {stats['documents_sampled']:,} of {stats['documents_seen']:,} documents, "
            f"{stats['chars_sampled']:,} characters ({stats['documents_held_out']:,} held out for validation) |",
            f"| training | {stats['train_seconds']} s |",
            f"| compression on the sample | {stats['bytes_per_token']} bytes per token |",
            "",
            f"Special token ids (control symbols: text never encodes to them): {specials}.",
            "",
            "Longest pieces: " + ", ".join(f"`{tok.id_to_piece(i)}`" for i in longest),
            "",
            f"How `{EXAMPLE!r}` encodes (note the literal `<|assistant_end|>` is ordinary text):",
            "",
            pieces,
        ]
    )


@flow(name="tokenizer", log_prints=True)
def tokenizer(
    lake: LakeConfig = LakeConfig(),
    config: TokenizerConfig = TokenizerConfig(),
    clean: str | list[str] | None = None,
    crawl: str | None = None,
    holdout: float = TokenizeConfig().val_fraction,
    run: str | None = None,
) -> dict[str, Any]:
    """Train on `clean` (one clean dataset or several crawls'; default `curated/{crawl}/clean`),
    never on the `holdout` fraction of documents that tokenize keeps for validation, into
    `tokenizers/{run}/{name}` (`tokenizers/{name}` without a run); returns its URI and stats."""
    root = lake.open()
    layout = Layout(root)
    if clean is None:
        if crawl is None:
            raise ValueError("give the clean dataset(s) or the crawl to train the tokenizer on")
        clean = layout.curated(crawl).clean
    out = layout.tokenizer(run, config.name)
    stats = in_lake(root, train_tokenizer)(clean, out, config, holdout)
    declare(out)
    create_markdown_artifact(
        _report(out, stats), key=artifact_key("tokenizer-report", run), description=f"tokenizer {out}"
    )
    print(f"tokenizer {out}: {stats['vocab_size']} pieces, {stats['bytes_per_token']} bytes/token on its sample")
    return stats
