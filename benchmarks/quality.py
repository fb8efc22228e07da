"""The quality step's benchmark (docs/quality.md): our curate chain with the fastText quality
scorer off and on, against datatrove's FineWeb chain (trafilatura), and the transformers
scorer's docs/s on CPU.

    python benchmarks/quality.py [--rounds N] [--transformer-docs N]

The pages are the 181 real articles of ../shared/data/extraction-benchmark, in one WARC file;
the chains, the anchor and the CPU accounting are benchmarks/curate.py's.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.curate import DATA, REPO, WORK, anchor, articles, build_warc, ensure_anchor, our_texts, run_ours  # noqa: E402


def quality_models(items, folder: Path) -> tuple[str, str]:
    """A fastText classifier trained here at the trainer's defaults (the 181 article bodies
    against the same pages' whole-page text), and a randomly initialised model of FineWeb-Edu's
    classifier's shape (BERT-base: 12 layers x 768, one regression output; a WordPiece
    vocabulary trained on the pages): its speed is the real one's, its scores are noise."""
    import torch
    from resiliparse.extract.html2text import extract_plain_text
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    from tasks.curate.quality import DEFAULT_LABEL, fasttext_line
    from tasks.quality_train import NEGATIVE_LABEL, QualityTrainConfig, train_fasttext

    truth = json.loads((DATA / "ground-truth.json").read_text())
    pages_text = [extract_plain_text(html.decode("utf-8", "replace"), main_content=False) for _, _, html in items]
    folder.mkdir(parents=True, exist_ok=True)
    fasttext_path = folder / "fasttext.bin"
    lines = [f"{DEFAULT_LABEL} {fasttext_line(truth[k]['articleBody'])}" for k, *_ in items]
    lines += [f"{NEGATIVE_LABEL} {fasttext_line(t)}" for t in pages_text if t.strip()]
    train_fasttext(lines, str(fasttext_path), QualityTrainConfig())

    bert = folder / "bert-base-regression"
    if not (bert / "config.json").exists():
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.train_from_iterator(
            pages_text,
            trainers.WordPieceTrainer(vocab_size=30522, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]),
        )
        torch.manual_seed(0)
        BertForSequenceClassification(BertConfig(vocab_size=tok.get_vocab_size(), num_labels=1)).save_pretrained(bert)
        PreTrainedTokenizerFast(
            tokenizer_object=tok,
            pad_token="[PAD]",
            unk_token="[UNK]",
            cls_token="[CLS]",
            sep_token="[SEP]",
            mask_token="[MASK]",
            model_max_length=512,
        ).save_pretrained(bert)
    return str(fasttext_path), str(bert)


def quality_benchmark(items, warc: Path, python: Path, rounds: int, transformer_docs: int) -> dict:
    """Docs/s per core of our chain (trafilatura, as datatrove's FineWeb chain) with the
    fastText quality scorer off and on, against datatrove's chain, best of `rounds`
    interleaved rounds; then the transformers scorer's docs/s on CPU (one thread)."""
    import torch

    from tasks.curate.config import QualityConfig
    from tasks.curate.quality import scorer

    fasttext_path, bert = quality_models(items, WORK / "quality-models")
    fasttext_scorer = scorer(QualityConfig(model=fasttext_path))
    rows = []
    for _ in range(rounds):
        ours = run_ours([warc], "trafilatura")
        start = time.process_time()
        scores = fasttext_scorer.score(ours["kept_texts"])
        scoring = time.process_time() - start
        theirs = anchor(python, "chain", str(warc.parent), "trafilatura")
        rows.append(
            {
                "off": len(items) / ours["cpu_seconds"],
                "on": len(items) / (ours["cpu_seconds"] + scoring),
                "datatrove": len(items) / theirs["cpu_seconds"],
                "scored": len(scores),
                "scoring_seconds": scoring,
                "scored_docs_per_s": len(scores) / scoring if scoring else None,
            }
        )
    best = {k: max(r[k] for r in rows) for k in ("off", "on", "datatrove")}
    print(
        f"\nquality step, fastText scorer ({Path(fasttext_path).stat().st_size / 1e6:.0f} MB model), trafilatura, docs per CPU-second, best of {rounds}:"
    )
    print(
        f"  chain, quality off  {best['off']:7.1f}   {best['off'] / best['datatrove']:.1f}x datatrove's FineWeb chain ({best['datatrove']:.1f})"
    )
    print(f"  chain, quality on   {best['on']:7.1f}   {best['on'] / best['datatrove']:.1f}x")
    print(
        "  rounds (off / on / datatrove): "
        + "; ".join(f"{r['off']:.1f} / {r['on']:.1f} / {r['datatrove']:.1f}" for r in rows)
    )
    print(
        f"  the scorer alone: {max(r['scored_docs_per_s'] for r in rows):,.0f} kept docs/s ({rows[0]['scored']} docs)"
    )

    torch.set_num_threads(1)
    texts = [t for t in our_texts(items, "resiliparse") if t][:transformer_docs]
    bert_scorer = scorer(QualityConfig(model=bert, device="cpu", batch_size=8))
    bert_scorer.score(texts[:8])  # warm up
    start = time.process_time()
    bert_scorer.score(texts)
    cpu = time.process_time() - start
    tokens = sum(min(512, len(bert_scorer.tokenizer(t)["input_ids"])) for t in texts)
    print(
        f"transformers scorer, BERT-base shape (FineWeb-Edu's classifier), CPU, 1 thread: {len(texts) / cpu:.2f} docs/s "
        f"({len(texts)} docs, {tokens / len(texts):.0f} tokens each on average, batches of 8)"
    )
    return {
        "fasttext": {
            **best,
            "ratio_off": best["off"] / best["datatrove"],
            "ratio_on": best["on"] / best["datatrove"],
            "rounds": rows,
        },
        "transformers_cpu": {
            "docs_per_s": len(texts) / cpu,
            "docs": len(texts),
            "mean_tokens": tokens / len(texts),
            "threads": 1,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--rounds", type=int, default=2, help="interleaved rounds per side; the fastest counts (the machine is shared)"
    )
    parser.add_argument(
        "--transformer-docs", type=int, default=32, help="documents for the transformers scorer's CPU figure"
    )
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    items = articles(None)
    warc = WORK / "quality" / "extraction-benchmark.warc.gz"
    warc.parent.mkdir(parents=True, exist_ok=True)
    build_warc(items, warc)
    result = quality_benchmark(items, warc, ensure_anchor(), args.rounds, args.transformer_docs)
    out = REPO / "benchmarks" / "out"
    out.mkdir(exist_ok=True)
    (out / "curate-quality.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
