"""Runs every benchmark and writes ``benchmarks/out/report.md`` and ``benchmarks/out/report.json``.

    python benchmarks/run_all.py            # the full suite (`make bench`)
    python benchmarks/run_all.py --quick    # a smoke run of every benchmark

Each benchmark runs in its own process, one after another (``training``, ``profile_costs``,
``inference``, ``memory``, ``threads_probe``, then ``explain_latency`` and ``app_latency``
when those scripts exist), writes a JSON result to ``benchmarks/out/``, and this script
assembles the report and prints the key ratios. This process never imports torch, so the
memory benchmark's children start from a small peak RSS.

The benchmarks run with ``OMP_WAIT_POLICY=PASSIVE`` unless ``--omp-wait-policy`` says
otherwise: on this 2-core machine shared with other test runs, libgomp's default spinning
makes 2-thread timings 10-20× slower whenever another process is busy, which would measure
the neighbours rather than the code (``threads_probe`` shows all three settings side by side).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import common

BENCHMARKS = ("training", "profile_costs", "inference", "memory", "threads_probe")
EXTERNAL = ("explain_latency", "app_latency")  # written by others; run when present
TARGETS = {"ratio_rt_gru": 0.40, "efficiency": 0.50, "p95_ms": 20.0}


# ---------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------


def run_benchmark(name: str, args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    """Runs one of our benchmark scripts; returns its JSON result (or an error record)."""
    out = common.OUT_DIR / f"{name}.json"
    out.unlink(missing_ok=True)
    command = [sys.executable, f"benchmarks/{name}.py", "--threads", str(args.threads), "--out", str(out)]
    if args.quick:
        command.append("--quick")
    return _run(name, command, env, args.timeout, out)


def run_external(name: str, args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    """Runs a benchmark someone else wrote, passing only the flags its --help mentions."""
    script = common.ROOT / "benchmarks" / f"{name}.py"
    if not script.is_file():
        return {"status": "not present", "command": None}
    help_text = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, env=env,
                               cwd=common.ROOT, timeout=120).stdout
    command = [sys.executable, f"benchmarks/{name}.py"]
    out = None
    if "--out" in help_text:
        out = common.OUT_DIR / f"{name}.json"
        out.unlink(missing_ok=True)
        command += ["--out", str(out)]
    if "--threads" in help_text:
        command += ["--threads", str(args.threads)]
    if args.quick:
        if "--quick" in help_text:
            command.append("--quick")
        elif "--repeats" in help_text:
            command += ["--repeats", "2"]
    return _run(name, command, env, args.timeout, out)


def _run(name: str, command: list[str], env: dict[str, str], timeout: float, out: Path | None) -> dict[str, Any]:
    common.log(f"running {' '.join(command[1:])}")
    start = time.perf_counter()
    try:
        proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=common.ROOT, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": f"timed out after {timeout:.0f} s", "command": _shown(command)}
    seconds = time.perf_counter() - start
    record: dict[str, Any] = {"command": _shown(command), "seconds": seconds}
    if proc.returncode != 0:
        record["status"] = f"failed (exit {proc.returncode})"
        record["stderr_tail"] = proc.stderr[-3000:]
        return record
    record["status"] = "ok"
    record["stdout"] = proc.stdout.strip()
    if out is not None and out.is_file():
        record["result"] = json.loads(out.read_text())
    else:  # a script that prints its JSON result on stdout
        start_json = proc.stdout.find("\n{") + 1 if not proc.stdout.startswith("{") else 0
        try:
            record["result"] = json.loads(proc.stdout[start_json:])
        except json.JSONDecodeError:
            pass
    print(proc.stdout.strip(), flush=True)
    return record


def _shown(command: list[str]) -> str:
    return " ".join(["python", *[str(Path(c).relative_to(common.ROOT)) if c.startswith(str(common.ROOT)) else c
                                 for c in command[1:]]])


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def _m(figure: dict[str, float] | None, fmt: str = "{:.2f}") -> str:
    """A median with its spread: ``0.52 (0.49–0.57)``."""
    if not figure:
        return "–"
    if figure.get("n", 1) > 1 and figure["min"] != figure["max"]:
        return f"{fmt.format(figure['median'])} ({fmt.format(figure['min'])}–{fmt.format(figure['max'])})"
    return fmt.format(figure["median"])


def _ok(value: float | None, target: float, lower_is_better: bool = True) -> str:
    if value is None:
        return "not measured"
    met = value <= target if lower_is_better else value >= target
    return "met" if met else "**not met**"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def key_figures(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The headline numbers (medians) the report and stdout lead with."""
    figures: dict[str, Any] = {}
    training = results.get("training", {}).get("result")
    if training:
        for row in training["configs"]:
            key = f"{row['dataset']}/{row['cell']}"
            figures[f"ratio_per_example {key}"] = row["ours"]["ratio_per_example"]["median"]
            figures[f"ratio_per_token {key}"] = row["ours"]["ratio_per_token"]["median"]
            figures[f"efficiency {key}"] = row["ours"]["efficiency"]["median"]
            if "proposed" in row:
                figures[f"proposed ratio_per_example {key}"] = row["proposed"]["ratio_per_example"]["median"]
                figures[f"proposed efficiency {key}"] = row["proposed"]["efficiency"]["median"]
    inference = results.get("inference", {}).get("result")
    if inference:
        for threads, stats in inference["latency"]["by_threads"].items():
            figures[f"single-sentence p95 ms ({threads} thread(s))"] = stats["p95"]["median"]
        figures["imdb predict_proba sentences/s"] = inference["throughput"]["sentences_per_second"]["median"]
    return figures


def training_section(result: dict[str, Any]) -> list[str]:
    s = result["settings"]
    lines = [
        "## Training throughput (ours vs the tutorial loop)",
        "",
        f"Sizes: embedding {s['embedding_dim']}, hidden {s['hidden_size']}, batch {s['batch_size']}, one "
        f"unidirectional layer, pooling `{s['pooling']}`, dropout {s['dropout']}, Adam lr {s['lr']}, clip {s['clip']}, "
        f"no pretrained vectors, same vocabulary. **Ours** = {s['ours_timed']}. **Reference** = "
        "`benchmarks/tutorial_baseline.py`: DataLoader whose collate tokenizes and looks up every text on every batch, "
        f"pads/truncates to {s['reference_fixed_length']}, embedding → cell(batch_first) → `output[:, -1]`, no "
        f"packing/masking. **Proposed** = {s['proposed']}. Per configuration the three loops are built once and "
        f"advanced in {s['windows']} short windows each (batches per window in the table), taking turns in a rotating "
        "order through the start of a seeded epoch, after 2 warm-up batches. Every figure is computed per window, then "
        "the median (min–max in brackets); ratios pair windows run back to back. Epoch times are extrapolated: ours by "
        "real tokens (bucketed batches cost ~ their tokens), the reference by examples (every batch is 64×50).",
        "",
    ]
    rows = []
    for r in result["configs"]:
        ours, ref, prop = r["ours"], r["reference"], r.get("proposed")
        rows.append([
            r["dataset"], r["cell"], f"{r['windows']}×{r['window_batches']} of {r['steps_per_epoch']}",
            _m(ours["epoch_seconds"]), _m(ref["epoch_seconds"]),
            _m(ours["ratio_per_example"]), _m(ours["ratio_per_token"]),
            _m(ours["tokens_per_second"], "{:,.0f}"), _m(ref["tokens_per_second"], "{:,.0f}"),
            f"{r['padding_fraction']['ours']:.0%} / {r['padding_fraction']['reference']:.0%}",
            f"{r['length_floor_ratio']:.2f}",
            _m(prop["epoch_seconds"]) if prop else "–", _m(prop["ratio_per_example"]) if prop else "–",
            _m(prop["speedup_over_ours"]) if prop else "–",
        ])
    lines += _table(["dataset", "cell", "batches timed", "ours s/epoch", "ref s/epoch", "ours/ref per example",
                     "ours/ref per token", "ours real tok/s", "ref real tok/s", "padding ours/ref",
                     "length floor",
                     "proposed s/epoch", "proposed/ref per example", "proposed speedup"], rows)
    prep = result.get("prepare_data_seconds", {})
    lines += [
        "",
        "Ours pays tokenization once, in `prepare_data` (not in the epoch figures): "
        + ", ".join(f"{k} {v:.1f} s" for k, v in prep.items()) + ".",
        "",
        "*Length floor* = ours' padded time steps per text ÷ the reference's 50: the ratio bucketing alone would "
        "give if a time step cost the same in both loops and nothing else did. Below it only by doing less per "
        "step or per batch than the reference.",
        "",
        "imdb is a different task for the two loops: the reference reads at most 50 tokens of each review "
        "(~{:,} real tokens per epoch) while ours reads up to 400 (~{:,}); compare per token there, not per example."
        .format(*next(((r["epoch_real_tokens_reference"], r["epoch_real_tokens"]) for r in result["configs"]
                       if r["dataset"] == "imdb"), (0, 0))),
        "",
    ]
    return lines


def efficiency_section(result: dict[str, Any]) -> list[str]:
    peak = result["matmul_flops_per_second"]
    lines = [
        "## Hardware efficiency",
        "",
        "Model FLOPs per real token = 3 × (2·G·H·E + 2·G·H·H) (input and recurrent projections, one direction; "
        "×3 for forward + backward; G = 1/3/4 for RNN/GRU/LSTM). Not counted: gate element-wise maths, embedding, "
        "head, loss, optimizer; padding is counted as waste. Efficiency = FLOPs/token × real tokens/s ÷ FLOP/s of "
        f"a {result['matmul_size']}² float32 `torch.matmul` measured in the same process once per repetition: "
        f"**{_m({k: v / 1e9 if k != 'n' else v for k, v in peak.items()}, '{:.0f}')} GFLOP/s** "
        f"with {result['environment']['threads']} threads.",
        "",
    ]
    rows = []
    for r in result["configs"]:
        prop = r.get("proposed")
        rows.append([r["dataset"], r["cell"], f"{r['flops_per_real_token'] / 1e3:.0f}k",
                     _m(r["ours"]["efficiency"]), _m(r["reference"]["efficiency"]),
                     _m(prop["efficiency"]) if prop else "–",
                     _ok(r["ours"]["efficiency"]["median"], TARGETS["efficiency"], lower_is_better=False)
                     if r["cell"] in ("gru", "lstm") else "(no target)"])
    lines += _table(["dataset", "cell", "FLOPs/token", "ours", "reference (real tokens only)", "proposed",
                     "target ≥ 0.50 (ours)"], rows)
    return lines + [""]


def inference_section(result: dict[str, Any]) -> list[str]:
    lat = result["latency"]
    lines = [
        "## Inference",
        "",
        f"Single sentence: `Predictor.predict_proba([text])` with `{lat['run']}` on rotten_tomatoes test sentences, "
        f"{lat['calls_per_round']} calls per round, {lat['rounds']} rounds (thread counts interleaved); medians of the "
        "per-round percentiles. 1 thread is what the app server uses (`configure_server_process`).",
        "",
    ]
    rows = [[t, _m(s["p50"]), _m(s["p95"]), _m(s["p99"]), _ok(s["p95"]["median"], TARGETS["p95_ms"])]
            for t, s in lat["by_threads"].items()]
    lines += _table(["torch threads", "p50 ms", "p95 ms", "p99 ms", "target p95 ≤ 20 ms"], rows)
    tp = result["throughput"]
    lines += [
        "",
        f"Batch: `predict_proba(texts)` on {tp['texts']:,} imdb test reviews ({tp['tokens_read']:,} tokens read, "
        f"{tp['threads']} threads): **{_m(tp['sentences_per_second'], '{:.0f}')} sentences/s**, "
        f"{_m(tp['tokens_per_second'], '{:,.0f}')} tokens/s; of which encoding (tokenize + look-up) "
        f"{_m(tp['encode_seconds'])} s and the model {_m(tp['model_seconds'])} s. Model: {tp['run']}.",
        "",
    ]
    return lines


def memory_section(result: dict[str, Any]) -> list[str]:
    lines = ["## Memory (peak RSS)", ""]
    train = result["train_imdb_lstm"]
    m = train["model"]
    lines.append(
        f"Training the default imdb model ({m['cell'].upper()}, E={m['embedding_dim']}, H={m['hidden_size']}, "
        f"pooling {m['pooling']}, vocab {m['vocab_size']:,}, {train['num_parameters']:,} parameters) for "
        f"{train['steps']} steps (longest batch {train.get('longest_batch_tokens', '?')} tokens; the cap is "
        f"{train['longest_text_tokens']}), `ru_maxrss` after each stage (median of fresh processes):")
    lines.append("")
    lines += _table(["stage", "peak RSS MB"], [[k, _m(v, "{:.0f}")] for k, v in train["stages_peak_mb"].items()])
    pred = result["app_predictors_in_process"]
    lines += ["", "A Python process that imports streamlit and `rnn_demo.ui` and loads the shipped runs' Predictors "
                  f"({', '.join(pred['runs'])}), one prediction each:", ""]
    lines += _table(["stage", "peak RSS MB"], [[k, _m(v, "{:.0f}")] for k, v in pred["stages_peak_mb"].items()])
    server = result.get("app_server")
    if server:
        lines += ["", f"The app server (`streamlit run app.py`, only the shipped runs visible): {server['driven']}. "
                      f"Startup to healthy {_m(server['startup_seconds'])} s.", ""]
        lines += _table(["stage", "VmRSS MB", "VmHWM MB"],
                        [[k, _m(v["VmRSS"], "{:.0f}"), _m(v["VmHWM"], "{:.0f}")] for k, v in server["stages_mb"].items()])
    if result.get("app_server_error"):
        lines += ["", f"App server measurement failed: `{result['app_server_error'][:300]}`"]
    return lines + [""]


def probe_section(result: dict[str, Any]) -> list[str]:
    lines = [
        "## Threads and OpenMP waiting (fresh process per variant, rounds interleaved)",
        "",
        f"Load average per round: {result['load_average_per_round']}. Train step = the real Trainer step on "
        "rotten_tomatoes (GRU, benchmark sizes); predict = one-sentence `predict_proba` with the shipped GRU.",
        "",
    ]
    rows = [[name, _m(v["train_step_ms"], "{:.1f}"), _m(v["predict_p50_ms"]), _m(v["predict_p95_ms"])]
            for name, v in result["variants"].items()]
    return lines + _table(["variant", "train step ms", "predict p50 ms", "predict p95 ms"], rows) + [""]


def profile_section(result: dict[str, Any]) -> list[str]:
    lines = ["## Profile", "", f"py-spy: {result['py_spy']}.", ""]
    for key, title in (("train_epoch", "One rotten_tomatoes GRU training epoch (Trainer.iter_steps, benchmark sizes)"),
                       ("predict_single", "Single-sentence predict_proba (shipped rotten_tomatoes-gru)")):
        part = result[key]
        lines.append(f"**{title}**")
        lines.append("")
        spy = part.get("py_spy")
        if spy:
            lines.append("Wall-time share by phase (py-spy samples): " + ", ".join(
                f"{k} {v:.0%}" for k, v in spy["phases"].items() if v >= 0.005) + ".")
        elif part.get("py_spy_error"):
            lines.append(f"py-spy failed: `{part['py_spy_error'][-200:]}`")
        ops = part.get("torch_profiler", {}).get("ops", [])
        if ops:
            lines.append("")
            lines.append("Top operators by self CPU time (torch.profiler): " + ", ".join(
                f"`{o['op']}` {o['self_share']:.0%} ({o['calls']:,} calls, {o['self_ms'] / max(o['calls'], 1) * 1e3:.0f} µs each)"
                for o in ops[:6]) + ".")
        lines.append("")
    lines += ["**What-if measurements (interleaved, medians)**", ""]
    rows = [[f"Adam step, vocab {r['vocab_size']:,} ({r['parameters']:,} params)", f"{_m(r['default_ms'])} ms",
             f"{_m(r['fused_ms'])} ms (fused=True)", f"{r['speedup']:.1f}×"] for r in result["adam_step"]]
    rows += [[f"{r['cell'].upper()} training step, batch 64×{r['seq_len']}", f"{_m(r['kept_ms'], '{:.0f}')} ms",
              f"{_m(r['flushed_ms'], '{:.0f}')} ms (denormals flushed)", f"{r['speedup']:.1f}×"]
             for r in result["flush_denormal"]]
    rows += [[f"{r['cell'].upper()} on imdb, real Trainer (same seed and batches), per batch",
              f"{_m(r['kept_ms'], '{:.0f}')} ms", f"{_m(r['flushed_ms'], '{:.0f}')} ms (denormals flushed)",
              f"{_m(r['speedup'], '{:.1f}')}×"] for r in result.get("flush_denormal_imdb", [])]
    lines += _table(["measurement", "as is", "changed", "speedup"], rows)
    prep = result.get("prepare_data")
    if prep:
        lines += ["", f"`prepare_data({prep['dataset']})` took {prep['prepare_data_seconds']:.1f} s, of which "
                      f"{prep['repeated_tokenization_seconds']:.1f} s ({prep['share']:.0%}) is tokenizing the train and "
                      "validation splits a second time (once for the vocabulary / OOV rate, once in `encode_texts`)."]
    return lines + [""]


def recommendations(results: dict[str, dict[str, Any]]) -> list[str]:
    prof = results.get("profile_costs", {}).get("result") or {}
    training = results.get("training", {}).get("result") or {}
    lines = ["## Proposed core changes (not applied; evidence above)", ""]
    fd = {r["cell"]: r for r in prof.get("flush_denormal", [])}
    speedups = {f"{r['dataset']}/{r['cell']}": r["proposed"]["speedup_over_ours"]["median"]
                for r in training.get("configs", []) if "proposed" in r}
    if fd:
        mm = next((r for r in fd.values() if r.get("matmul_ms")), None)
        lines.append(
            "1. **Flush denormals to zero while training** (`torch.set_flush_denormal(True)` once at the start of "
            "`Trainer.iter_steps`, or in the CLI / job-worker entry points). With `pooling=\"last\"` on long texts the "
            "gradients that flow back through hundreds of steps decay into the float32 denormal range, where x86 "
            "arithmetic is many times slower, and the per-step matmuls of the GRU/RNN backward crawl. Training step "
            "time, denormals kept → flushed"
            + (" (real Trainer on imdb, same seed and batches): " + ", ".join(
                f"{r['cell'].upper()} {r['kept_ms']['median']:.0f} → {r['flushed_ms']['median']:.0f} ms/batch "
                f"({r['speedup']['median']:.1f}×)" for r in prof["flush_denormal_imdb"]) + "; synthetic batch 64×300: "
               if prof.get("flush_denormal_imdb") else " (synthetic batch 64×300): ")
            + ", ".join(f"{c.upper()} {r['kept_ms']['median']:.0f} → {r['flushed_ms']['median']:.0f} ms "
                        f"({r['speedup']:.1f}×)" for c, r in fd.items())
            + (f"; `aten::mm` self time in one {mm['cell'].upper()} step {mm['matmul_ms']['kept']:.0f} → "
               f"{mm['matmul_ms']['flushed']:.0f} ms" if mm else "")
            + ". PyTorch's CPU LSTM is one fused oneDNN kernel (`mkldnn_rnn_layer`), GRU and RNN are ~10 ATen ops "
              "per time step, which is where the denormal matmuls show. Effect on results: values below 1.2e-38 "
              "become 0, far below anything that changes a weight update.")
    ad = prof.get("adam_step", [])
    if ad:
        share = prof.get("train_epoch", {}).get("py_spy", {}).get("phases", {}).get("optimizer.step (Adam)")
        lines.append(
            "2. **Use the fused Adam/AdamW kernel on CPU** (`torch.optim.Adam(params, lr=..., weight_decay=..., "
            "fused=True)` in `Trainer._make_optimizer`; SGD accepts `fused=True` too). torch's default CPU path is a "
            "Python loop of ~10 element-wise passes per parameter, and the embedding table is most of the "
            "parameters (1.0 M of 1.1 M on rotten_tomatoes, 3.0 M on imdb). "
            + (f"Adam is {share:.0%} of a rotten_tomatoes GRU epoch. " if share else "")
            + "Step time: " + ", ".join(f"vocab {r['vocab_size']:,}: {r['default_ms']['median']:.1f} → "
                                        f"{r['fused_ms']['median']:.1f} ms" for r in ad) + ".")
    if speedups:
        lines.append("   Both together (the *proposed* loop above), epoch speedup over ours as is: "
                     + ", ".join(f"{k} {v:.2f}×" for k, v in speedups.items()) + ".")
    prep = prof.get("prepare_data")
    if prep:
        lines.append(
            f"3. **Tokenize once in `prepare_data`**: it tokenizes the training split for `Vocab.build` and again in "
            f"`encode_texts`, and the validation split for the OOV rate and again to encode it — "
            f"{prep['repeated_tokenization_seconds']:.1f} s of {prep['prepare_data_seconds']:.1f} s on imdb. Let "
            "`encode_texts` accept token lists (or add `encode_tokens`) and compute the OOV rate from the "
            "pre-truncation token lists already built.")
    probe = (results.get("threads_probe", {}).get("result") or {}).get("variants", {})
    if probe:
        cells = "; ".join(f"{name}: {v['train_step_ms']['median']:.0f} ms/step, predict p95 "
                          f"{v['predict_p95_ms']['median']:.1f} ms" for name, v in probe.items())
        lines.append(
            "4. **Never train with spinning OpenMP threads on a shared machine.** The app already gives the server 1 "
            "thread and each job worker cores ÷ max jobs, but `python -m rnn_demo train`/`build-checkpoints` use "
            "torch's default (all cores, libgomp spinning), as does a worker when `RNN_DEMO_MAX_JOBS=1`. Probe (real "
            f"Trainer step, rotten_tomatoes GRU, load average {probe_load(results)}): {cells}. Proposed: a "
            "`--threads` CLI flag (→ `torch.set_num_threads`), and `os.environ.setdefault(\"OMP_WAIT_POLICY\", "
            "\"PASSIVE\")` before torch is first imported in `rnn_demo/__main__.py` and in the job manager before it "
            "spawns workers (libgomp reads it when it loads). On an idle machine spinning is somewhat faster, so "
            "this trades a little best-case speed for never collapsing.")
    lines.append("")
    return lines


def probe_load(results: dict[str, dict[str, Any]]) -> str:
    loads = (results.get("threads_probe", {}).get("result") or {}).get("load_average_per_round", [])
    return " → ".join(f"{x[0]:.1f}" for x in loads if x) or "?"


def unmet(results: dict[str, dict[str, Any]]) -> list[str]:
    out = []
    training = results.get("training", {}).get("result")
    if training:
        for r in training["configs"]:
            if r["dataset"] == "rotten_tomatoes" and r["cell"] == "gru":
                ratio = r["ours"]["ratio_per_example"]["median"]
                if ratio > TARGETS["ratio_rt_gru"]:
                    prop = r.get("proposed", {}).get("ratio_per_example", {}).get("median")
                    out.append(f"rotten_tomatoes GRU epoch time ours/reference is {ratio:.2f} (target ≤ 0.40)"
                               + (f"; {prop:.2f} with the proposed changes" if prop else "") + ".")
            if r["cell"] in ("gru", "lstm") and r["ours"]["efficiency"]["median"] < TARGETS["efficiency"]:
                out.append(f"{r['dataset']} {r['cell'].upper()} efficiency {r['ours']['efficiency']['median']:.2f} "
                           "(target ≥ 0.50).")
    inference = results.get("inference", {}).get("result")
    if inference:
        for threads, s in inference["latency"]["by_threads"].items():
            if s["p95"]["median"] > TARGETS["p95_ms"]:
                out.append(f"single-sentence p95 {s['p95']['median']:.1f} ms at {threads} thread(s) (target ≤ 20 ms).")
    for name, rec in results.items():
        if rec.get("status") not in ("ok", None):
            out.append(f"`{name}`: {rec['status']}.")
    return out


def external_section(name: str, record: dict[str, Any]) -> list[str]:
    lines = [f"## {name}", "", f"Status: {record['status']}" + (f"; `{record['command']}`" if record.get("command")
                                                                 else "") + ".", ""]
    result = record.get("result")
    if result:
        flat = _flatten(result)
        lines += _table(["figure", "value"], [[k, v] for k, v in flat[:60]])
    elif record.get("stdout"):
        lines += ["```", record["stdout"][-2500:], "```"]
    if record.get("stderr_tail"):
        lines += ["```", record["stderr_tail"][-1500:], "```"]
    return lines + [""]


def _flatten(data: Any, prefix: str = "") -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    if isinstance(data, dict):
        for k, v in data.items():
            rows += _flatten(v, f"{prefix}{k} / " if not isinstance(v, (int, float, str, bool)) else f"{prefix}{k}")
    elif isinstance(data, list):
        if all(isinstance(x, (int, float)) for x in data):
            rows.append((prefix.rstrip(" /"), ", ".join(f"{x:.4g}" for x in data)))
        elif all(isinstance(x, str) for x in data):
            rows.append((prefix.rstrip(" /"), ", ".join(data)))
        else:
            for i, v in enumerate(data[:10]):
                rows += _flatten(v, f"{prefix}{i} / ")
    elif isinstance(data, float):
        rows.append((prefix, f"{data:.4g}"))
    else:
        rows.append((prefix, str(data)))
    return rows


def write_report(results: dict[str, dict[str, Any]], args: argparse.Namespace, seconds: float,
                 env_note: str) -> dict[str, Any]:
    figures = key_figures(results)
    env = next((r["result"]["environment"] for r in results.values() if r.get("result", {}).get("environment")), {})
    lines = [
        "# RNN Playground benchmarks",
        "",
        f"`{_shown([sys.executable, *sys.argv])}` on {time.strftime('%Y-%m-%d %H:%M')}, {seconds / 60:.1f} min. "
        f"torch {env.get('torch', '?')}, **{args.threads} torch threads** (`torch.set_num_threads`), {env_note}, "
        f"{env.get('cpu', '?')} ({env.get('cpu_count', '?')} cores). Load average at start/end of the run: "
        f"{results.get('_load', {}).get('start')} / {results.get('_load', {}).get('end')} — the machine is shared, "
        "so absolute times move with the load; ratios come from loops run back to back in one process.",
        "",
        "## Targets",
        "",
    ]
    target_rows = []
    key = "ratio_per_example rotten_tomatoes/gru"
    if key in figures:
        target_rows.append(["rotten_tomatoes GRU epoch time, ours/reference (per example)", f"{figures[key]:.2f}",
                            "≤ 0.40", _ok(figures[key], 0.40)])
        if f"proposed {key}" in figures:
            target_rows.append(["… with the proposed core changes", f"{figures['proposed ' + key]:.2f}", "≤ 0.40",
                                _ok(figures["proposed " + key], 0.40)])
    for k, v in figures.items():
        if k.startswith("efficiency ") and k.split("/")[-1] in ("gru", "lstm"):
            target_rows.append([f"hardware efficiency {k.split(' ', 1)[1]} (ours)", f"{v:.2f}", "≥ 0.50",
                                _ok(v, 0.50, lower_is_better=False)])
    for k, v in figures.items():
        if k.startswith("single-sentence p95"):
            target_rows.append([k, f"{v:.2f}", "≤ 20", _ok(v, 20.0)])
    lines += _table(["figure (median)", "value", "target", ""], target_rows) + [""]
    sections = [("training", training_section), ("training", efficiency_section), ("inference", inference_section),
                ("memory", memory_section), ("threads_probe", probe_section), ("profile_costs", profile_section)]
    for name, section in sections:
        rec = results.get(name)
        if rec and rec.get("result"):
            lines += section(rec["result"])
        elif rec:
            lines += [f"## {name}", "", f"{rec['status']}", "```", rec.get("stderr_tail", "")[-1500:], "```", ""]
    for name in EXTERNAL:
        if name in results:
            lines += external_section(name, results[name])
    lines += recommendations(results)
    missing = unmet(results)
    lines += ["## Unmet", ""] + ([f"- {m}" for m in missing] if missing else ["- none"]) + [""]
    lines += ["## Commands", ""] + [f"- `{r['command']}` ({r.get('seconds', 0):.0f} s, {r['status']})"
                                    for n, r in results.items() if not n.startswith("_") and r.get("command")]
    (common.OUT_DIR / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = {"key_figures": figures, "unmet": missing, "threads": args.threads, "omp": env_note,
              "seconds": seconds, "results": results}
    (common.OUT_DIR / "report.json").write_text(json.dumps(report, indent=1, allow_nan=True), encoding="utf-8")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads in every benchmark (default 2)")
    parser.add_argument("--quick", action="store_true", help="a smoke run (~2 min): fewer repetitions and batches")
    parser.add_argument("--only", default="", help="comma-separated subset, e.g. training,inference")
    parser.add_argument("--skip", default="", help="comma-separated benchmarks to leave out, e.g. app_latency")
    parser.add_argument("--omp-wait-policy", choices=["passive", "inherit", "active"], default="passive",
                        help="OMP_WAIT_POLICY for the benchmarks (default passive: on a shared machine spinning "
                             "OpenMP threads make multi-thread timings collapse whenever another process runs; "
                             "the threads probe measures all three); inherit = leave the environment alone")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds before a benchmark is abandoned")
    args = parser.parse_args()
    env = dict(os.environ)
    if args.omp_wait_policy != "inherit":
        env["OMP_WAIT_POLICY"] = args.omp_wait_policy.upper()
    env_note = f"OMP_WAIT_POLICY={env.get('OMP_WAIT_POLICY', 'unset (libgomp default: spin, then sleep)')}"
    chosen = [b for b in (*BENCHMARKS, *EXTERNAL) if (not args.only or b in args.only.split(","))
              and b not in args.skip.split(",")]
    if args.quick and "app_latency" in chosen and "app_latency" not in args.only:
        chosen.remove("app_latency")  # it trains two 8-epoch runs in a browser: minutes, never a smoke test
    common.OUT_DIR.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    results: dict[str, dict[str, Any]] = {"_load": {"start": common.load_average()}}
    for name in chosen:
        results[name] = run_external(name, args, env) if name in EXTERNAL else run_benchmark(name, args, env)
        common.log(f"{name}: {results[name]['status']}")
    results["_load"]["end"] = common.load_average()
    report = write_report(results, args, time.perf_counter() - start, env_note)
    print(f"\nreport: {common.OUT_DIR / 'report.md'} (and report.json)")
    for k, v in report["key_figures"].items():
        print(f"  {k}: {v:.2f}")
    for m in report["unmet"]:
        print(f"  unmet: {m}")


if __name__ == "__main__":
    main()
