"""The datatrove side of benchmarks/dedup.py. Runs inside the anchor venv (datatrove 0.10.1 +
spacy), never in the project's: `python dedup_anchor.py TEXTS.jsonl`.

Times datatrove's MinHash stage 1 (`MinhashDedupSignature`) with FineWeb's configuration
(SHA-1 64-bit hashes, 14 buckets x 8 hashes, 5-grams, seed 1) over the texts, one process,
and prints {"docs", "seconds"} as JSON.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time

from datatrove.data import Document
from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature
from datatrove.utils.hashing import HashConfig


def main(path: str) -> None:
    with open(path) as f:
        docs = [Document(text=json.loads(line)["text"], id=str(i)) for i, line in enumerate(f)]
    config = MinhashConfig(
        hash_config=HashConfig(hash_fc="sha1", precision=64), num_buckets=14, hashes_per_bucket=8, n_grams=5, seed=1
    )
    with tempfile.TemporaryDirectory() as out:
        step = MinhashDedupSignature(output_folder=out, config=config)
        start = time.perf_counter()
        step.run(iter(docs), rank=0, world_size=1)
        seconds = time.perf_counter() - start
    print(json.dumps({"docs": len(docs), "seconds": seconds}))


if __name__ == "__main__":
    main(sys.argv[1])
