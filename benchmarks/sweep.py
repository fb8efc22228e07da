"""Size the demo model: run the tiny preset's training stages per setting and print what each costs and scores.

    python benchmarks/sweep.py --setting current: \\
        --setting deep:layers=8,width=96,heads=4 --setting v2k:vocab=2048 [--jobs 2] [--lake lake/sweep]
    python benchmarks/sweep.py --grid grid.yaml        # {settings: {label: {key: value}}, base: {key: value}}
    python benchmarks/sweep.py --table --lake lake/sweep   # the table again, from the saved results

A setting is a label and overrides of the tiny preset: any dotted config key (`sft.train.steps=600`)
or a short name (ALIASES: layers, width, heads, vocab, seq, pretrain_steps, sft_steps, rl_iterations),
plus `threads` (OMP_NUM_THREADS of the stage processes; `make demo` runs with 1).

Every stage runs through the CLI (`crawl2chat STAGE --set key=value ...` on this checkout's code), each in its own
process, in `make demo`'s order. What curation makes does not depend on the model, so the
sample crawl, curation and search index run once per lake; the tokenizer and token shards once per
tokenizer setting; then per setting, under its own run (`sweep-{label}`): pretrain, SFT (conversations
and training), evaluate of the base and the SFT model on the SFT test split, and RL.

The machine this runs on is usually shared, so beside wall seconds it records each stage's CPU seconds
(os.wait4's rusage of the stage process and the children it waited for). `make demo` trains with one
torch thread and maps tasks over two threads, so on an idle 2-core machine a stage takes between
CPU/2 (both workers busy) and CPU seconds (one busy): the table's `idle≤` column is the sum of CPU
seconds, an upper bound of the idle wall time (an extrapolation, not a measurement; docs/sizing.md). The Prefect server's own CPU is not counted (it serves every stage of every setting).

Results go to {lake}/sweep/{label}.json as each setting finishes (a setting with a saved result is not
run again: delete its file to measure it again); `--table` prints them all.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
CRAWL = "sample"
ALIASES = {
    "layers": ["pretrain.model.n_layer"],
    "width": ["pretrain.model.n_embd"],
    "heads": ["pretrain.model.n_head", "pretrain.model.n_kv_head"],
    "vocab": ["tokenizer.vocab_size"],
    "seq": ["pretrain.model.seq_len"],
    "pretrain_steps": ["pretrain.train.steps"],
    "sft_steps": ["sft.train.steps"],
    "rl_iterations": ["rl.iterations"],
}
CLI = "from flows.cli import app; app(prog_name='crawl2chat')"  # the console script, on this checkout's code
STAGES = ("tokenizer", "tokenize", "pretrain", "sft", "eval_base", "eval_sft", "rl")


# -- the grid ------------------------------------------------------------------------------


def parse_overrides(text: str) -> dict[str, Any]:
    """`layers=6,width=96` -> {"pretrain.model.n_layer": 6, "pretrain.model.n_embd": 96}; values are YAML
    (a value with a comma in it, such as a mapping of several keys, goes in a --grid file)."""
    out: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"an override is key=value, got {item!r}")
        out.update(expand(key.strip(), yaml.safe_load(value)))
    return out


def expand(key: str, value: Any) -> dict[str, Any]:
    """A short name to its config keys; `threads` and dotted keys stay as they are."""
    if key in ALIASES:
        return dict.fromkeys(ALIASES[key], value)
    if key != "threads" and "." not in key:
        raise ValueError(f"unknown setting {key!r}: a dotted config key, `threads`, or one of {sorted(ALIASES)}")
    return {key: value}


def parse_setting(text: str) -> tuple[str, dict[str, Any]]:
    """`label:key=value,...` (`label:` alone: the preset as it is)."""
    label, sep, rest = text.partition(":")
    if not sep or not re.fullmatch(r"[A-Za-z0-9_-]+", label):
        raise ValueError(f"a setting is label:key=value,... with a label of letters, digits, - and _; got {text!r}")
    return label, parse_overrides(rest)


def load_grid(path: Path) -> dict[str, dict[str, Any]]:
    """A YAML grid: `settings: {label: {key: value}}`, and `base:` overrides every setting shares."""
    tree = yaml.safe_load(path.read_text()) or {}
    base = {k2: v2 for k, v in (tree.get("base") or {}).items() for k2, v2 in expand(k, v).items()}
    grid = {}
    for label, overrides in (tree.get("settings") or {}).items():
        parse_setting(f"{label}:")  # the label's rules
        grid[label] = {**base, **{k2: v2 for k, v in (overrides or {}).items() for k2, v2 in expand(k, v).items()}}
    if not grid:
        raise ValueError(f"{path}: no settings")
    return grid


def tokenizer_run(overrides: dict[str, Any]) -> str:
    """Settings whose tokenizer keys agree share one tokenizer and one set of token shards."""
    keys = sorted((k, v) for k, v in overrides.items() if k.startswith("tokenizer."))
    return "sweep-tok" + "".join(f"-{k.split('.')[-1]}{v}" for k, v in keys).replace("_", "")


# -- running stages ------------------------------------------------------------------------


def last_json(stdout: str) -> dict[str, Any]:
    """The object a CLI command printed last (flows may print before it)."""
    decoder = json.JSONDecoder()
    for match in reversed(list(re.finditer(r"^\{", stdout, re.M))):
        try:
            value, _ = decoder.raw_decode(stdout[match.start() :])
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    raise ValueError("the command printed no JSON object")


def stage(
    name: str, args: list[str], overrides: dict[str, Any], lake: str, log: Path, threads: int = 1
) -> tuple[dict[str, Any], dict[str, float]]:
    """Run `crawl2chat {args} --set ...`; its JSON result, and wall and CPU seconds."""
    sets = [a for k, v in overrides.items() if k != "threads" for a in ("--set", f"{k}={json.dumps(v)}")]
    cmd = [sys.executable, "-c", CLI, *args, "--lake", lake, *sets]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    times = {"wall_s": time.monotonic() - start, "cpu_s": usage.ru_utime + usage.ru_stime}
    if proc.returncode:
        raise RuntimeError(f"{name} exited {proc.returncode}: {' '.join(cmd)}; see {log}")
    print(f"  {name}: {times['wall_s']:.0f} s wall, {times['cpu_s']:.0f} s CPU", flush=True)
    return last_json(out), times


def prepare(lake: str, work: Path) -> dict[str, Any]:
    """The sample crawl, its curation and its search index: what every setting shares."""
    done = work / "prepare.json"
    if done.exists():
        return json.loads(done.read_text())
    print("prepare: sample crawl, curate, search index", flush=True)
    crawl, t1 = stage("sample-crawl", ["sample-crawl"], {}, lake, work / "logs" / "sample-crawl.log")
    _, t2 = stage("curate", ["curate", *crawl["warcs"], "--crawl", CRAWL], {}, lake, work / "logs" / "curate.log")
    _, t3 = stage("search-index", ["search-index", "--crawl", CRAWL], {}, lake, work / "logs" / "search-index.log")
    times = {"sample_crawl": t1, "curate": t2, "search_index": t3}
    done.write_text(json.dumps({"times": times}, indent=2))
    return {"times": times}


def prepare_tokenizer(overrides: dict[str, Any], lake: str, work: Path) -> dict[str, Any]:
    """Train the tokenizer and encode the crawl, once per tokenizer setting."""
    run = tokenizer_run(overrides)
    done = work / f"{run}.json"
    if done.exists():
        return json.loads(done.read_text())
    tok_keys = {k: v for k, v in overrides.items() if k.startswith("tokenizer.")}
    if "tokenizer.vocab_size" in tok_keys:  # the preset's name says 4k
        tok_keys.setdefault("tokenizer.name", f"bpe-{tok_keys['tokenizer.vocab_size']}")
    print(f"{run}: tokenizer and token shards", flush=True)
    tok, t1 = stage(
        "tokenizer", ["tokenizer", "--run", run, "--crawl", CRAWL], tok_keys, lake, work / "logs" / f"{run}.log"
    )
    enc, t2 = stage(
        "tokenize",
        ["tokenize", "--run", run, "--crawl", CRAWL, "--tokenizer", tok["uri"]],
        tok_keys,
        lake,
        work / "logs" / f"{run}-tokenize.log",
    )
    result = {"tokenizer": tok["uri"], "tokens": enc["uri"], "times": {"tokenizer": t1, "tokenize": t2}}
    done.write_text(json.dumps(result, indent=2))
    return result


def training_slots(jobs: int) -> None:
    """Size the server's `gpu` concurrency limit to `jobs`: a local run creates it with one slot,
    which would make settings meant to run side by side take turns in every training stage."""
    sys.path.insert(0, str(REPO))
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate

    from flows import server
    from tasks.runtime import GPU_LIMIT, ensure_concurrency_limit

    with server.connected():
        if not ensure_concurrency_limit(GPU_LIMIT, jobs):
            with get_client(sync_client=True) as client:
                client.update_global_concurrency_limit(GPU_LIMIT, GlobalConcurrencyLimitUpdate(limit=jobs))


def run_setting(label: str, overrides: dict[str, Any], lake: str, work: Path, tok: dict[str, Any]) -> dict[str, Any]:
    """Pretrain, SFT, evaluate (base and SFT) and RL under the run `sweep-{label}`; the results, saved."""
    done = work / f"{label}.json"
    if done.exists():  # a sweep run again goes on where it stopped; delete the file to measure again
        print(f"{label}: measured before ({done})", flush=True)
        return json.loads(done.read_text())
    run, logs, threads = f"sweep-{label}", work / "logs" / label, int(overrides.get("threads", 1))
    partial = work / f"{label}.partial.json"
    result: dict[str, Any] = {"label": label, "overrides": overrides, "times": dict(tok["times"]), "partial": True}

    def go(name: str, args: list[str], **keep: Any) -> dict[str, Any]:
        """One stage; what it measured joins the result, saved as it goes (a stopped sweep keeps it)."""
        out, result["times"][name] = stage(f"{label} {name}", args, overrides, lake, logs / f"{name}.log", threads)
        result.update({key: pick(out) for key, pick in keep.items()})
        partial.write_text(json.dumps(result, indent=2, default=str))
        return out

    pre = go(
        "pretrain",
        ["pretrain", "--run", run, "--tokenizer", tok["tokenizer"], "--tokens", tok["tokens"]],
        params=lambda o: o.get("params"),
        val_bpb=lambda o: o.get("val_bpb"),
        pretrain_tokens_per_s=lambda o: o.get("tokens_per_s"),
        pretrain_tokens=lambda o: o.get("tokens"),
    )
    # The crawl by name, as the pipeline gives it: without it `sft --run` leaves out the crawl's facts.
    sft = go("sft", ["sft", "--run", run, "--crawl", CRAWL], sft_tokens_per_s=lambda o: o.get("tokens_per_s"))
    test = sft["conversations"]["test"]
    go(
        "eval_base",
        ["evaluate", "--checkpoint", pre["checkpoint"], "--conversations", test],
        base=lambda o: o["metrics"],
    )
    go("eval_sft", ["evaluate", "--checkpoint", sft["checkpoint"], "--conversations", test], sft=lambda o: o["metrics"])
    go("rl", ["rl", "--run", run], rl_before=lambda o: o["before"], rl_after=lambda o: o["after"])
    result["partial"] = False
    done.write_text(json.dumps(result, indent=2, default=str))
    partial.unlink()
    return result


# -- the table -----------------------------------------------------------------------------


def flat_metrics(result: dict[str, Any]) -> dict[str, float | str]:
    """Every number evaluate and RL returned, as `sft.{metric}`, `base.{metric}`, `rl.{before|after}.{key}`."""
    out: dict[str, float | str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, bool):
            return
        if isinstance(value, (int, float)):
            out[prefix] = float(value)
        elif isinstance(value, str) and value.startswith("not measured"):
            out[prefix] = "not measured"
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}", v)

    for key in ("base", "sft"):
        walk(key, result.get(key) or {})
    walk("rl.before", result.get("rl_before") or {})
    walk("rl.after", result.get("rl_after") or {})
    return out


def _num(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    if isinstance(value, int) or abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3f}" if 0 <= value <= 1 else f"{value:.1f}"


def described(overrides: dict[str, Any]) -> str:
    """Overrides as they were given: short names where one applies, else the dotted key."""
    short = {}
    for key, value in overrides.items():
        name = next((alias for alias, keys in ALIASES.items() if key in keys), key)
        short.setdefault(name, value)
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in short.items()) or "(preset)"


def table(results: list[dict[str, Any]], shared: dict[str, Any] | None = None) -> str:
    """Markdown: one row per setting (costs), then one row per metric with a column per setting."""
    shared_cpu = sum(t["cpu_s"] for t in (shared or {}).get("times", {}).values())
    head = [
        "setting",
        "overrides",
        *(f"{s} s" for s in STAGES),
        "wall s",
        "CPU s",
        "idle≤ s",
        "params",
        "val bpb",
        "pretrain tokens/CPU-s",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        t = r["times"]
        cpu = sum(v["cpu_s"] for v in t.values())
        cells = [
            r["label"] + (" (partial)" if r.get("partial") else ""),
            described(r["overrides"]),
            *(f"{t[s]['wall_s']:.0f} / {t[s]['cpu_s']:.0f}" if s in t else "—" for s in STAGES),
            f"{sum(v['wall_s'] for v in t.values()):.0f}",
            f"{cpu:.0f}",
            f"{cpu + shared_cpu:.0f}",
            _num(r.get("params")),
            f"{r['val_bpb']:.4f}" if r.get("val_bpb") is not None else "—",
            # Per CPU second: the steady figure on a shared machine (the stage's own tokens/s is per wall second).
            _num(r["pretrain_tokens"] / t["pretrain"]["cpu_s"])
            if r.get("pretrain_tokens") and "pretrain" in t
            else "—",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    flats = [flat_metrics(r) for r in results]
    keys = sorted({k for f in flats for k in f}, key=lambda k: ("heldout" not in k, k))
    lines += ["", "| metric | " + " | ".join(r["label"] for r in results) + " |", "|" + "---|" * (len(results) + 1)]
    lines += ["| " + k + " | " + " | ".join(_num(f.get(k)) for f in flats) + " |" for k in keys]
    note = (
        f"stage cells: wall / CPU seconds; idle≤ adds the shared stages' {shared_cpu:.0f} CPU s (crawl, curate, index)"
    )
    return "\n".join([note, "", *lines])


def saved(work: Path) -> list[dict[str, Any]]:
    """Each setting's finished result, else what it measured before it stopped (`partial`)."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(work.glob("*.json")):
        label = path.name.removesuffix(".json").removesuffix(".partial")
        if path.name == "prepare.json" or label.startswith("sweep-tok"):
            continue
        if label not in found or not path.name.endswith(".partial.json"):
            found[label] = json.loads(path.read_text())
    return list(found.values())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--setting", action="append", default=[], help="label:key=value,... (repeatable)")
    ap.add_argument("--grid", type=Path, help="YAML grid: settings: {label: {key: value}}, base: {key: value}")
    ap.add_argument("--lake", default="lake/sweep", help="lake of the sweep (the shared stages are kept there)")
    ap.add_argument("--jobs", type=int, default=1, help="settings run at once (CPU seconds stay per setting)")
    ap.add_argument("--table", action="store_true", help="print the saved results and exit")
    args = ap.parse_args(argv)
    os.environ.setdefault("CRAWL2CHAT_PREFECT_PORT", "4218")  # its own server: others may be serving 4200
    lake = str(Path(args.lake).resolve())
    work = Path(lake) / "sweep"
    work.mkdir(parents=True, exist_ok=True)
    shared_file = work / "prepare.json"
    if args.table:
        print(table(saved(work), json.loads(shared_file.read_text()) if shared_file.exists() else None))
        return 0
    grid = load_grid(args.grid) if args.grid else {}
    grid.update(parse_setting(s) for s in args.setting)
    if not grid:
        ap.error("give --setting label:key=value,... or --grid FILE")
    shared = prepare(lake, work)
    training_slots(max(1, args.jobs))
    tokenizers = {}
    for overrides in grid.values():  # one at a time: settings that share a tokenizer must not train it twice
        run = tokenizer_run(overrides)
        tokenizers[run] = tokenizers.get(run) or prepare_tokenizer(overrides, lake, work)
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        futures = [
            pool.submit(run_setting, label, o, lake, work, tokenizers[tokenizer_run(o)]) for label, o in grid.items()
        ]
        results = []
        for f in futures:
            try:
                results.append(f.result())
            except Exception as exc:  # one setting failing must not hide the others' figures
                print(f"setting failed: {exc}", file=sys.stderr)
    print(table(results, shared))
    return 0 if len(results) == len(grid) else 1


if __name__ == "__main__":
    sys.exit(main())
