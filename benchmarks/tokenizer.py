"""Our sentencepiece BPE against HuggingFace `tokenizers`' byte-level BPE, side by side.

Both train on the same sample at the same vocabulary size, then this prints training time and
peak memory, bytes per token (higher is better) on held-out English web text, Python source
and Japanese web text, and encoding throughput on one core and on all cores.

    python -m benchmarks.tokenizer [--vocab 4096 8192] [--clean URI] [--data ../shared/data]

The sample is the extraction benchmark's article bodies (real English web text) minus a
held-out fifth, or, with `--clean`, the tokenizer stage's own sample of a lake dataset. Two
variants isolate our choices: "ours, lines" trains sentencepiece the usual way (one line per
sentence, so newlines are never merged), and "HF, digits" splits digits as we do.
Targets: compression within 2% of HF's; throughput that scales with cores.
"""

from __future__ import annotations

import argparse
import glob
import json
import multiprocessing as mp
import os
import sysconfig
import time
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
HELD_OUT = 0.2


# -- text --------------------------------------------------------------------------------


def articles(data: Path) -> tuple[list[str], list[str]]:
    """Extraction-benchmark article bodies: (training sample, held-out), split by id hash."""
    from tasks.tokenize import is_validation

    truth = json.loads((data / "extraction-benchmark" / "ground-truth.json").read_text())
    train, held = [], []
    for key in sorted(truth):
        (held if is_validation(key, HELD_OUT) else train).append(truth[key]["articleBody"])
    return train, held


def python_sources(limit: int = 60) -> list[str]:
    files = sorted(glob.glob(sysconfig.get_paths()["stdlib"] + "/*.py"))[:limit]
    return [Path(f).read_text(encoding="utf-8", errors="replace") for f in files]


def japanese(data: Path) -> list[str]:
    """Text of the Japanese pages in the ClueWeb sample (WARC 0.18), extracted with resiliparse."""
    from fastwarc.warc import ArchiveIterator, WarcRecordType
    from resiliparse.extract.html2text import extract_plain_text
    from resiliparse.parse.encoding import bytes_to_str, detect_encoding

    out = []
    with open(data / "warc" / "commoncrawl-sample" / "clueweb-quirk.warc.gz", "rb") as f:
        for record in ArchiveIterator(f, record_types=WarcRecordType.response, parse_http=True):
            body = record.reader.read()
            text = extract_plain_text(bytes_to_str(body, detect_encoding(body)), main_content=False)
            if text.strip():
                out.append(text)
    return out


def lake_sample(clean: str, vocab: int) -> list[str]:
    from tasks.tokenize import TokenizerConfig, sample_documents

    return sample_documents(clean, TokenizerConfig(vocab_size=vocab), holdout=HELD_OUT)[0]


# -- training, each in its own process (for its peak memory) -----------------------------


def _train(kind: str, docs: list[str], vocab: int) -> tuple[Any, float]:
    started = time.perf_counter()
    if kind.startswith("ours"):
        from models.tokenizer import train

        if kind == "ours, lines":  # sentencepiece fed a text file: one line per sentence
            docs = [line for d in docs for line in d.split("\n")]
        return train(docs, vocab, threads=1).model_proto, time.perf_counter() - started
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from models.tokenizer import SPECIALS

    tok = Tokenizer(models.BPE())
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    digits = pre_tokenizers.Digits(individual_digits=True)
    tok.pre_tokenizer = pre_tokenizers.Sequence([digits, byte_level]) if kind == "HF, digits" else byte_level
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab,
        special_tokens=["<unk>", *SPECIALS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    os.environ["RAYON_NUM_THREADS"] = "1"  # one training thread, as ours
    tok.train_from_iterator(docs, trainer)
    return tok.to_str(), time.perf_counter() - started


def _peak_rss() -> int:
    """This process's peak resident memory in bytes (VmHWM: unlike ru_maxrss, it starts
    afresh at exec, so a spawned child does not inherit its parent's peak)."""
    status = Path("/proc/self/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1]) * 1024


def _child(kind: str, docs: list[str], vocab: int, conn: Any) -> None:
    before = _peak_rss()
    model, seconds = _train(kind, docs, vocab)
    conn.send((model, seconds, (_peak_rss() - before) / 2**20))


def train_in_child(kind: str, docs: list[str], vocab: int) -> tuple[Any, float, float]:
    """(model, seconds, peak memory above the child's starting size in MiB)."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(kind, docs, vocab, child))
    proc.start()
    result = parent.recv()
    proc.join()
    return result


# -- measuring ---------------------------------------------------------------------------


class Ours:
    def __init__(self, model: bytes):
        from models.tokenizer import Tokenizer

        self.tok = Tokenizer(model)

    def encode(self, texts: list[str], threads: int) -> list[list[int]]:
        return self.tok.encode_batch(texts, threads=threads)

    def exact(self, texts: list[str]) -> bool:
        return all(self.tok.decode(ids) == t for ids, t in zip(self.encode(texts, 0), texts))


class HF:
    def __init__(self, serialized: str):
        from tokenizers import Tokenizer

        self.tok = Tokenizer.from_str(serialized)

    def encode(self, texts: list[str], threads: int) -> list[list[int]]:
        # Rust's rayon pool uses every core unless parallelism is off (read at each call).
        os.environ["TOKENIZERS_PARALLELISM"] = "false" if threads == 1 else "true"
        return [e.ids for e in self.tok.encode_batch_fast(texts)]

    def exact(self, texts: list[str]) -> bool:
        return all(self.tok.decode(ids, skip_special_tokens=False) == t for ids, t in zip(self.encode(texts, 0), texts))


def bytes_per_token(tok: Any, texts: list[str]) -> float:
    return sum(len(t.encode()) for t in texts) / sum(map(len, tok.encode(texts, 0)))


def throughputs(
    toks: dict[str, Any], texts: list[str], cores: int, repeats: int = 5
) -> dict[tuple[str, int], tuple[float, float]]:
    """(MB/s of UTF-8 input, CPU seconds per MB) for each tokenizer on 1 and on `cores`
    threads: the best of `repeats` rounds, interleaved so that a noisy neighbour hits every
    setting alike. CPU time (all threads of this process) does not grow when other work
    steals the cores, so it shows whether a second thread adds work or only divides it."""
    mb = sum(len(t.encode()) for t in texts) / 1e6
    best: dict[tuple[str, int], tuple[float, float]] = {}
    for _ in range(repeats):
        for name, tok in toks.items():
            for threads in (1, cores):
                wall, cpu = time.perf_counter(), time.process_time()
                tok.encode(texts, threads)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                old = best.get((name, threads), (float("inf"), float("inf")))
                best[name, threads] = (min(old[0], wall), min(old[1], cpu))
    return {k: (mb / wall, cpu / mb) for k, (wall, cpu) in best.items()}


def row(name: str, values: list[Any], fmt: str = "{:>12}") -> str:
    return f"{name:<34}" + "".join(fmt.format(v) for v in values)


def run(vocab: int, train_docs: list[str], evals: dict[str, list[str]], throughput_texts: list[str]) -> None:
    kinds = ["ours", "ours, lines", "HF", "HF, digits"]
    trained = {k: train_in_child(k, train_docs, vocab) for k in kinds}
    toks = {k: (Ours if k.startswith("ours") else HF)(trained[k][0]) for k in kinds}
    cores = os.cpu_count() or 1
    print(
        f"\n== vocabulary {vocab:,}: {len(train_docs)} training documents, {sum(len(d.encode()) for d in train_docs) / 1e6:.2f} MB =="
    )
    print(row("", kinds))
    print(row("training time (s, 1 thread)", [f"{trained[k][1]:.2f}" for k in kinds]))
    print(row("training peak memory (MiB)", [f"{trained[k][2]:.0f}" for k in kinds]))
    ratios: dict[str, float] = {}
    bpt_all: dict[str, dict[str, float]] = {}
    for name, texts in evals.items():
        bpt = bpt_all[name] = {k: bytes_per_token(toks[k], texts) for k in kinds}
        ratios[name] = bpt["ours"] / bpt["HF"]
        print(row(f"bytes/token, {name}", [f"{bpt[k]:.3f}" for k in kinds]))
    measured = throughputs({k: toks[k] for k in ("ours", "HF")}, throughput_texts, cores)
    mbs = {k: v[0] for k, v in measured.items()}
    for threads, label in ((1, "1 core"), (cores, f"all {cores} cores")):
        print(row(f"encode MB/s, {label}", [f"{mbs['ours', threads]:.2f}", "", f"{mbs['HF', threads]:.2f}", ""]))
        print(
            row(
                f"encode CPU s/MB, {label}",
                [f"{measured['ours', threads][1]:.3f}", "", f"{measured['HF', threads][1]:.3f}", ""],
            )
        )
    everything = [t for texts in evals.values() for t in texts]
    print(row("decode(encode(x)) == x on all text", [str(toks[k].exact(everything)) for k in kinds]))
    print("ratios ours / HF:")
    for name in evals:
        gap = 100 * (ratios[name] - 1)
        print(f"  compression, {name:<22} {ratios[name]:.3f}  ({gap:+.1f}%)")
    print(f"  training time                     {trained['ours'][1] / trained['HF'][1]:.2f}x HF's")
    print(f"  encoding, 1 core                  {mbs['ours', 1] / mbs['HF', 1]:.2f}")
    print(f"  encoding, all {cores} cores             {mbs['ours', cores] / mbs['HF', cores]:.2f}")
    for who in ("ours", "HF"):
        print(
            f"  {who} speed-up from 1 to {cores} cores: {mbs[who, cores] / mbs[who, 1]:.2f}x wall clock, "
            f"{measured[who, cores][1] / measured[who, 1][1]:.2f}x the CPU time per MB"
        )
    for name in evals:
        print(f"  whole documents vs lines (ours), {name}: {bpt_all[name]['ours'] / bpt_all[name]['ours, lines']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vocab", type=int, nargs="+", default=[4096, 8192])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--clean", help="train on a sample of this clean dataset instead of the articles")
    args = parser.parse_args()

    train_docs, held_english = articles(args.data)
    evals = {
        "English web (held out)": held_english,
        "Python code": python_sources(),
        "Japanese web": japanese(args.data),
    }
    sizes = ", ".join(f"{k} {sum(len(t.encode()) for t in v) / 1e6:.2f} MB" for k, v in evals.items())
    print(f"evaluation text: {sizes}")
    # Throughput on a few MB: every evaluation text, repeated to smooth out the noise.
    throughput_texts = [t for texts in evals.values() for t in texts] * 2
    for vocab in args.vocab:
        docs = lake_sample(args.clean, vocab) if args.clean else train_docs
        run(vocab, docs, evals, throughput_texts)


if __name__ == "__main__":
    main()
