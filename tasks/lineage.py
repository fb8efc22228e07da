"""Lineage from the lake's manifests alone: every dataset and checkpoint names its parents, so
the chain from a checkpoint back to the WARC files needs no Prefect server or Cloud.

A parent that has a manifest is a dataset (followed further); one that has none is a raw
input, such as a WARC file, and ends its branch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from models import lake


@dataclass
class Node:
    uri: str
    kind: str  # the manifest's kind, or "file" for a raw input
    rows: int | None = None
    flow_run_id: str | None = None
    created_at: str | None = None
    parents: list[Node] = field(default_factory=list)
    seen_before: bool = False  # a shared ancestor already printed higher up


def trace(uri: str, _seen: set[str] | None = None) -> Node:
    """The lineage tree rooted at `uri` (shared ancestors are expanded once)."""
    seen = _seen if _seen is not None else set()
    uri = lake.normalize(uri)
    found = lake.read_manifest(uri)
    if found is None:
        return Node(uri=uri, kind="file")
    node = Node(uri, found.kind, found.rows, found.flow_run_id, found.created_at)
    if uri in seen:
        node.seen_before = True
        return node
    seen.add(uri)
    node.parents = [trace(p, seen) for p in found.parents]
    return node


def leaves(node: Node) -> list[str]:
    """The raw inputs (e.g. WARC files) that a dataset or checkpoint came from."""
    if node.kind == "file":
        return [node.uri]
    out: list[str] = []
    for parent in node.parents:
        out.extend(u for u in leaves(parent) if u not in out)
    return out


def render(node: Node, max_files: int = 8) -> str:
    """An indented tree, one line per dataset, raw files grouped under their dataset."""
    lines: list[str] = []

    def walk(n: Node, depth: int) -> None:
        pad = "  " * depth
        if n.kind == "file":
            lines.append(f"{pad}- {n.uri}")
            return
        detail = f"{n.kind}, {n.rows} rows" if n.rows is not None else n.kind
        run = f", flow run {n.flow_run_id}" if n.flow_run_id else ""
        more = " (see above)" if n.seen_before else ""
        lines.append(f"{pad}{n.uri}  [{detail}{run}]{more}")
        files = [p for p in n.parents if p.kind == "file"]
        for p in n.parents:
            if p.kind != "file":
                walk(p, depth + 1)
        for p in files[:max_files]:
            walk(p, depth + 1)
        if len(files) > max_files:
            lines.append(f"{pad}  ... and {len(files) - max_files} more files")

    walk(node, 0)
    return "\n".join(lines)
