"""benchmarks/sweep.py without a training run: how a grid is read (flags and YAML), which settings
share a tokenizer, how a stage's JSON is found in the CLI's output, and the table it prints."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmarks import sweep


def test_a_setting_names_its_overrides_by_short_name_or_dotted_key():
    label, overrides = sweep.parse_setting("deep:layers=8,width=96,heads=4,sft.train.lr=0.003,threads=2")
    assert label == "deep"
    assert overrides == {
        "pretrain.model.n_layer": 8,
        "pretrain.model.n_embd": 96,
        "pretrain.model.n_head": 4,  # heads sets both: the tiny preset has no grouped-query attention
        "pretrain.model.n_kv_head": 4,
        "sft.train.lr": 0.003,  # values are YAML: numbers stay numbers
        "threads": 2,
    }
    assert sweep.parse_setting("current:") == ("current", {})


@pytest.mark.parametrize(
    "text",
    ["no-colon", "bad label:layers=2", ":layers=2", "x:layers", "x:=3", "x:depth=3", "x:layers=2,,width"],
)
def test_a_malformed_setting_is_refused_with_what_was_given(text):
    with pytest.raises(ValueError):
        sweep.parse_setting(text)


@given(st.dictionaries(st.sampled_from(sorted(sweep.ALIASES)), st.integers(1, 10**6), min_size=1))
def test_short_names_round_trip_to_their_config_keys(chosen):
    text = ",".join(f"{k}={v}" for k, v in chosen.items())
    _, overrides = sweep.parse_setting(f"s:{text}")
    assert overrides == {key: v for k, v in chosen.items() for key in sweep.ALIASES[k]}


def test_a_yaml_grid_shares_its_base_and_a_setting_overrides_it(tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text("base: {sft_steps: 500}\nsettings:\n  current: {}\n  long: {sft_steps: 800, vocab: 2048}\n")
    assert sweep.load_grid(grid) == {
        "current": {"sft.train.steps": 500},
        "long": {"sft.train.steps": 800, "tokenizer.vocab_size": 2048},
    }
    (tmp_path / "empty.yaml").write_text("base: {layers: 2}\n")
    with pytest.raises(ValueError, match="no settings"):
        sweep.load_grid(tmp_path / "empty.yaml")


def test_settings_share_a_tokenizer_exactly_when_their_tokenizer_keys_agree():
    runs = {
        label: sweep.tokenizer_run(sweep.parse_setting(text)[1])
        for label, text in [
            ("current", "current:"),
            ("deep", "deep:layers=8,width=96"),
            ("v2k", "v2k:vocab=2048"),
            ("v2k-long", "v2k-long:vocab=2048,sft_steps=600"),
        ]
    }
    assert runs["current"] == runs["deep"] != runs["v2k"] == runs["v2k-long"]


def test_the_stage_result_is_the_last_json_object_printed():
    out = 'Prefect UI: http://x\n{"first": 1}\nlog line {not json}\n{\n  "uri": "a",\n  "n": {\n    "x": 2\n  }\n}\n'
    assert sweep.last_json(out) == {"uri": "a", "n": {"x": 2}}
    with pytest.raises(ValueError, match="no JSON"):
        sweep.last_json("only logs {here}\n")


def result(label, overrides, cpu, sft_metrics):
    times = {s: {"wall_s": 2.0 * cpu, "cpu_s": float(cpu)} for s in sweep.STAGES}
    return {
        "label": label,
        "overrides": overrides,
        "times": times,
        "params": 1_900_000,
        "val_bpb": 0.5481,
        "pretrain_tokens": 614_400,
        "base": {"math_calculator": 0.0},
        "sft": sft_metrics,
        "rl_before": {"all": {"pass1_greedy": 0.18}},
        "rl_after": {"all": {"pass1_greedy": 0.38}},
    }


def test_the_table_sums_stage_seconds_and_lists_every_metric_heldout_first():
    shared = {"times": {"curate": {"wall_s": 90.0, "cpu_s": 60.0}}}
    results = [
        result("current", {}, 10, {"math_calculator": 0.367, "heldout_math": 0.25}),
        result("v2k", {"tokenizer.vocab_size": 2048}, 20, {"math_calculator": 0.4}),
    ]
    lines = sweep.table(results, shared).splitlines()
    assert "60 CPU s" in lines[0]
    current, v2k = (next(line for line in lines if line.startswith(f"| {name} |")) for name in ("current", "v2k"))
    stages = len(sweep.STAGES)
    cells = [c.strip() for c in current.strip("|").split("|")]
    assert cells[1] == "(preset)" and cells[2] == "20 / 10"
    assert cells[2 + stages :] == [
        f"{20 * stages}",
        f"{10 * stages}",
        f"{10 * stages + 60}",
        "1,900,000",
        "0.5481",
        "61,440",  # 614,400 tokens in 10 CPU seconds
    ]
    assert "| vocab=2048 |" in v2k and f"| {20 * stages + 60} |" in v2k
    metric_rows = [line for line in lines if line.startswith("| base.") or line.startswith("| sft.")]
    assert metric_rows[0] == "| sft.heldout_math | 0.250 | — |"  # held-out first; absent where not measured
    assert "| sft.math_calculator | 0.367 | 0.400 |" in metric_rows
    assert "| rl.after.all.pass1_greedy | 0.380 | 0.380 |" in lines


def test_table_mode_prints_the_saved_results(tmp_path, capsys):
    work = tmp_path / "sweep"
    work.mkdir()
    (work / "prepare.json").write_text(json.dumps({"times": {"curate": {"wall_s": 1.0, "cpu_s": 5.0}}}))
    (work / "sweep-tok.json").write_text(json.dumps({"tokenizer": "t", "tokens": "k", "times": {}}))
    (work / "current.json").write_text(json.dumps(result("current", {}, 1, {"math_calculator": 0.5})))
    (work / "current.partial.json").write_text(json.dumps({**result("current", {}, 9, {}), "partial": True}))
    stopped = {"label": "deep", "overrides": {"pretrain.model.n_layer": 8}, "partial": True, "val_bpb": 0.6}
    stopped["times"] = {"pretrain": {"wall_s": 30.0, "cpu_s": 12.0}}
    (work / "deep.partial.json").write_text(json.dumps(stopped))
    assert sweep.main(["--table", "--lake", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "| current |" in printed and "| sft.math_calculator | 0.500 |" in printed and "5 CPU s" in printed
    deep = next(line for line in printed.splitlines() if line.startswith("| deep (partial) |"))
    assert "| — | — | 30 / 12 | — |" in deep and "| 0.6000 |" in deep  # the finished result beats a partial one
    with pytest.raises(SystemExit):
        sweep.main(["--lake", str(tmp_path)])  # neither settings nor a grid


def test_numbers_keep_their_precision_and_unmeasured_metrics_say_so():
    flat = sweep.flat_metrics(
        {"sft": {"math_accuracy_strict": 0.3667, "code_gain_points": 6.7, "fact_accuracy": "not measured: no facts"}}
    )
    assert flat == {
        "sft.math_accuracy_strict": 0.3667,
        "sft.code_gain_points": 6.7,
        "sft.fact_accuracy": "not measured",
    }
    assert [sweep._num(v) for v in (0.3667, 6.7, -3.3, 1_900_000, None)] == ["0.367", "6.7", "-3.3", "1,900,000", "—"]


def test_a_setting_measured_before_is_not_run_again(tmp_path):
    saved = result("current", {}, 1, {"math_calculator": 0.5})
    (tmp_path / "current.json").write_text(json.dumps(saved))
    # No lake, no tokenizer, no CLI: a stage that ran would fail on them.
    assert sweep.run_setting("current", {}, str(tmp_path / "absent"), tmp_path, {"times": {}}) == saved


def test_a_setting_runs_the_stages_in_the_demos_order_and_keeps_what_a_stopped_run_measured(tmp_path, monkeypatch):
    """The CLI is the boundary: a stand-in for `stage` answers as the commands' JSON does."""
    calls = []
    answers = {
        "pretrain": {"checkpoint": "ck/base", "params": 1_900_000, "val_bpb": 0.55, "tokens_per_s": 6000.0},
        "sft": {"checkpoint": "ck/sft", "conversations": {"test": "conv/test"}, "tokens_per_s": 5400.0},
        "evaluate": {"metrics": {"math_accuracy_strict": 0.3}},
        "rl": {"before": {"all": {"pass1_greedy": 0.2}}, "after": {"all": {"pass1_greedy": 0.4}}},
    }

    def fake_stage(name, args, overrides, lake, log, threads=1):
        calls.append((args, threads))
        if args[0] == "rl" and len(calls) < 6:
            raise RuntimeError("rl exited 1")
        return answers[args[0]], {"wall_s": 2.0, "cpu_s": 1.0}

    monkeypatch.setattr(sweep, "stage", fake_stage)
    tok = {"tokenizer": "tok/uri", "tokens": "tokens/uri", "times": {"tokenizer": {"wall_s": 1.0, "cpu_s": 1.0}}}
    _, overrides = sweep.parse_setting("deep:layers=8,threads=2")
    with pytest.raises(RuntimeError):
        sweep.run_setting("deep", overrides, "lake", tmp_path, tok)
    assert [a[0] for a, _ in calls] == ["pretrain", "sft", "evaluate", "evaluate", "rl"]
    assert calls[0][0][-4:] == ["--tokenizer", "tok/uri", "--tokens", "tokens/uri"] and calls[0][1] == 2
    assert calls[1][0] == ["sft", "--run", "sweep-deep", "--crawl", "sample"]  # the facts come with the crawl's name
    assert calls[2][0][-4:] == ["--checkpoint", "ck/base", "--conversations", "conv/test"]
    assert calls[3][0][-4:] == ["--checkpoint", "ck/sft", "--conversations", "conv/test"]
    stopped = json.loads((tmp_path / "deep.partial.json").read_text())
    assert stopped["partial"] and stopped["val_bpb"] == 0.55 and stopped["sft"] == {"math_accuracy_strict": 0.3}
    assert "rl" not in stopped["times"] and not (tmp_path / "deep.json").exists()
    finished = sweep.run_setting("deep", overrides, "lake", tmp_path, tok)
    assert not finished["partial"] and finished["rl_after"] == {"all": {"pass1_greedy": 0.4}}
    assert set(finished["times"]) == {"tokenizer", "pretrain", "sft", "eval_base", "eval_sft", "rl"}
    assert not (tmp_path / "deep.partial.json").exists() and sweep.saved(tmp_path) == [finished]


def test_overrides_are_shown_as_they_were_given():
    _, overrides = sweep.parse_setting("d:layers=8,heads=4,sft.train.steps=600,evaluate.limits={math: 3}")
    assert sweep.described(overrides) == 'layers=8, heads=4, sft_steps=600, evaluate.limits={"math": 3}'
    assert sweep.described({}) == "(preset)"
