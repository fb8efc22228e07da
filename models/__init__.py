"""Torch and sentencepiece code: tokenizer, model, trainer, engine. Never imports Prefect."""
