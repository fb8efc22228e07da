"""The few storage operations models/ needs, on local disk or s3:// alike (fsspec).

The bottom of the storage layer: URIs (local paths are absolute), filesystems and whole-file
reads and writes, atomic where asked (rename on disk, one PUT on S3). Lake datasets (shards
and manifests) are built on these in models/lake.py; checkpoints in models/checkpoint.py.
The S3 endpoint comes from AWS_ENDPOINT_URL (which models.lake.configure_storage sets).
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

import fsspec

MANIFEST = "_manifest.json"


def is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def normalize(uri: str) -> str:
    uri = uri.removeprefix("file://")
    return uri.rstrip("/") if is_remote(uri) else os.path.abspath(os.path.expanduser(uri))


def join(base: str, *parts: str) -> str:
    out = normalize(base)
    for part in parts:
        out = out.rstrip("/") + "/" + str(part).strip("/")
    return out


# botocore's retries for S3 (5xx, SlowDown, dropped connections): exponential backoff with
# jitter, capped at 20 s a wait, 10 attempts: an outage of about a minute and a half passes.
# The default (legacy, 5 attempts) gives up after ~7 s, and storage calls made in a flow's
# body (commits, manifest reads) have no task retries behind them.
S3_RETRIES = {"mode": "standard", "max_attempts": 10}


def storage_options(uri: str) -> dict[str, Any]:
    """fsspec options for `uri`: on S3 the endpoint from AWS_ENDPOINT_URL(_S3) and the retry
    policy. Credentials are left to s3fs's own lookup (AWS variables, profile), so they
    never travel as options."""
    if not uri.startswith(("s3://", "s3a://")):
        return {}
    # No listings cache: s3fs would keep a folder's listing for the life of the process, so a
    # manifest another process commits later would stay invisible (a dataset "not found").
    options: dict[str, Any] = {"config_kwargs": {"retries": dict(S3_RETRIES)}, "use_listings_cache": False}
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        options["client_kwargs"] = {"endpoint_url": endpoint}
    return options


def filesystem(uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    uri = normalize(uri)
    return fsspec.core.url_to_fs(uri, **storage_options(uri))


def read_json(uri: str) -> Any:
    fs, path = filesystem(uri)
    with fs.open(path, "r") as f:
        return json.load(f)


def write_bytes(uri: str, data: bytes, atomic: bool = False) -> None:
    """Write a file. `atomic`: readers see the old content or the new, never part
    (a rename on local disk; on S3 every single PUT already is)."""
    fs, path = filesystem(uri)
    parent = os.path.dirname(path)
    fs.makedirs(parent, exist_ok=True)
    if is_remote(uri):
        fs.pipe_file(path, data)
        return
    tmp = f"{parent}/.{os.path.basename(path)}.{uuid.uuid4().hex}" if atomic else path
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    if atomic:
        os.replace(tmp, path)


def read_bytes(uri: str) -> bytes:
    fs, path = filesystem(uri)
    return fs.cat_file(path)


def versioned_name(stem: str, suffix: str, data_sha256: str) -> str:
    """A file name that carries its content's checksum (`tokenizer.3f2a....model`): two writers
    of one folder never replace each other's file, and the manifest names the one it commits."""
    return f"{stem}.{data_sha256[:16]}{suffix}"
