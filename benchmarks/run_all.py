"""Runs every benchmark and writes ``benchmarks/out/report.md`` and ``benchmarks/out/report.json``.

    python benchmarks/run_all.py            # the full suite (`make bench`)
    python benchmarks/run_all.py --quick    # a smoke run of every benchmark

Each benchmark in ``BENCHMARKS`` runs in its own process, one after another, writes a JSON
result to ``benchmarks/out/``, and this script assembles the report and prints the key ratios. This process never imports torch, so the
memory benchmark's children start from a small peak RSS.

Every benchmark imports ``rnn_demo`` before torch (see ``common.py``), so it runs with the
package's process defaults, ``OMP_WAIT_POLICY=PASSIVE`` unless the environment sets a policy,
like ``python -m rnn_demo`` and the app; ``threads_probe`` compares that with 1 thread and with
libgomp's spinning default side by side.
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

# Each benchmark and the flags it gets besides ``--out``: (full run, ``--quick`` run). The first six
# share ``common.base_parser``; the others keep their own defaults (one torch thread, as the app server).
THREADS = object()  # stands for ``--threads N`` from this script's own --threads
BENCHMARKS: dict[str, tuple[list[Any], list[Any]]] = {
    "training": ([THREADS], [THREADS, "--quick"]),
    "profile_costs": ([THREADS], [THREADS, "--quick"]),
    "inference": ([THREADS], [THREADS, "--quick"]),
    "memory": ([THREADS], [THREADS, "--quick"]),
    "threads_probe": ([THREADS], [THREADS, "--quick"]),
    "worst_inputs": ([THREADS], [THREADS, "--quick"]),
    "explain_latency": ([], ["--repeats", "2"]),
    "neurons": ([], ["--quick"]),
    "app_latency": ([], ["--repeats", "2", "--predict-only"]),  # starts its own server; prints its JSON
}
BASE_PARSER = ("training", "profile_costs", "inference", "memory", "threads_probe", "worst_inputs")
PRINTS_JSON = ("app_latency",)
TARGETS = {"ratio_rt_gru": 0.40, "efficiency": 0.50, "p95_ms": 20.0, "worst_input_rss_mb": 1024.0}


# ---------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------


def run_benchmark(name: str, args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    """Runs one of ``BENCHMARKS`` with its flags; returns its JSON result (or an error record)."""
    full, quick = BENCHMARKS[name]
    command = [sys.executable, f"benchmarks/{name}.py"]
    command += [arg for flag in (quick if args.quick else full)
                for arg in (["--threads", str(args.threads)] if flag is THREADS else [flag])]
    out = None
    if name not in PRINTS_JSON:
        out = common.OUT_DIR / f"{name}.json"
        out.unlink(missing_ok=True)
        command += ["--out", str(out)]
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
        f"packing/masking. Per configuration both loops are built once and advanced in {s['windows']} short windows "
        "each (batches per window in the table), taking turns in alternating order through the start of a seeded "
        "epoch, after 2 warm-up batches. Every figure is computed per window, then "
        "the median (min–max in brackets); ratios pair windows run back to back. Epoch times are extrapolated: ours by "
        "real tokens (bucketed batches cost ~ their tokens), the reference by examples (every batch is 64×50).",
        "",
    ]
    rows = []
    for r in result["configs"]:
        ours, ref = r["ours"], r["reference"]
        rows.append([
            r["dataset"], r["cell"], f"{r['windows']}×{r['window_batches']} of {r['steps_per_epoch']}",
            _m(ours["epoch_seconds"]), _m(ref["epoch_seconds"]),
            _m(ours["ratio_per_example"]), _m(ours["ratio_per_token"]),
            _m(ours["tokens_per_second"], "{:,.0f}"), _m(ref["tokens_per_second"], "{:,.0f}"),
            f"{r['padding_fraction']['ours']:.0%} / {r['padding_fraction']['reference']:.0%}",
            f"{r['length_floor_ratio']:.2f}",
        ])
    lines += _table(["dataset", "cell", "batches timed", "ours s/epoch", "ref s/epoch", "ours/ref per example",
                     "ours/ref per token", "ours real tok/s", "ref real tok/s", "padding ours/ref",
                     "length floor"], rows)
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
        f"a {result['matmul_size']}² float32 `torch.matmul` sampled in the same process before the windows and after "
        "every round of windows (the machine's speed drifts during a run; the denominator comes from the same stretch "
        "of time as the windows): "
        f"**{_m({k: v / 1e9 if k != 'n' else v for k, v in peak.items()}, '{:.0f}')} GFLOP/s** "
        f"with {result['environment']['threads']} threads.",
        "",
    ]
    rows = []
    for r in result["configs"]:
        rows.append([r["dataset"], r["cell"], f"{r['flops_per_real_token'] / 1e3:.0f}k",
                     _m(r["ours"]["efficiency"]), _m(r["reference"]["efficiency"]),
                     _ok(r["ours"]["efficiency"]["median"], TARGETS["efficiency"], lower_is_better=False)
                     if r["cell"] in ("gru", "lstm") else "(no target)"])
    lines += _table(["dataset", "cell", "FLOPs/token", "ours", "reference (real tokens only)",
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


def worst_inputs_section(result: dict[str, Any]) -> list[str]:
    lines = ["## Worst inputs (fresh process each, its own peak RSS)", ""]
    rows = []
    for name, case in result["cases"].items():
        note = f"{case['growth_over_file']}× the {case['file_mb']} MB file over the process after imports" \
            if "growth_over_file" in case else (case["stderr_last_line"][:100] if case["exit"] else "")
        rows.append([name, str(case["exit"]), f"{case['seconds']:.2f}", f"{case['peak_rss_mb']:.0f}",
                     "yes" if case["traceback"] else "no", note.replace("|", "/")])
    return lines + _table(["input", "exit", "s", "peak RSS MB", "traceback", "note"], rows) + [""]


def probe_section(result: dict[str, Any]) -> list[str]:
    lines = [
        "## Threads and OpenMP waiting (fresh process per variant, rounds interleaved)",
        "",
        f"Load average (1 min) before each round: {' → '.join(f'{x[0]:.1f}' for x in result['load_average_per_round'] if x)}. "
        "Steps are real Trainer steps at the benchmark sizes (median of windows); predict = one-sentence "
        "`predict_proba` with the shipped GRU. Each variant is a fresh process that loads torch with exactly that "
        "environment.",
        "",
    ]
    keys = list(next(iter(result["variants"].values())))
    names = {"rotten_tomatoes_gru_step_ms": "rotten_tomatoes GRU step ms", "imdb_lstm_step_ms": "imdb LSTM step ms",
             "predict_p50_ms": "predict p50 ms", "predict_p95_ms": "predict p95 ms"}
    rows = [[name, *(_m(v[k], "{:.1f}" if "step" in k else "{:.2f}") for k in keys)]
            for name, v in result["variants"].items()]
    return lines + _table(["variant", *(names.get(k, k) for k in keys)], rows) + [""]


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
    lines += ["**What-if measurements (interleaved, medians)**: what the Trainer's fused Adam and denormal flushing "
              "are worth (\"as is\" = torch's default).", ""]
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
        lines += ["", f"`prepare_data({prep['dataset']})` takes {prep['prepare_data_seconds']:.1f} s; tokenizing its "
                      f"three splits once takes {prep['tokenize_seconds']:.1f} s ({prep['share']:.0%}): it now "
                      "tokenizes each split once (it used to tokenize train and validation twice)."]
    return lines + [""]


def recommendations(results: dict[str, dict[str, Any]]) -> list[str]:
    """What the profile and the what-ifs say about the core, with the numbers."""
    prof = results.get("profile_costs", {}).get("result") or {}
    probe_result = results.get("threads_probe", {}).get("result") or {}
    probe = probe_result.get("variants", {})
    threads = probe_result.get("environment", {}).get("threads", "N")
    lines = ["## Core changes", "",
             "Applied in the core while this suite was written (the figures above measure the core with them; the "
             "what-ifs measure what each is worth):", ""]
    lines.append(
        "- **Fused GRU/LSTM training kernels** (`rnn_demo/accel/kernels.py`, `rnn_demo/accel/csrc/`, compiled once "
        "per machine), used for every one-way GRU and LSTM layer trained on the CPU: a layer's whole forward and "
        "backward pass is one time loop over batch-first tensors. A forward step is two small matmuls (x_t W_ihᵀ, "
        "h W_hhᵀ) and one vectorised pass over the gates; a backward step is one pass over the gate gradients and the "
        "matmuls that carry them to h, to x_t and into the weight gradients, instead of torch's dozen-plus ATen "
        "calls per step. The weights are packed once per call for MKL's packed GEMM (single-threaded, 32 rows: "
        "130 → 170 GFLOP/s forward, 110 → 163 backward), nothing is transposed, no (T, B, G·H) projection or "
        "gradient tensor is written (the gate loops are memory-bound), and the large outputs come from buffers "
        "the kernels keep. With P threads the batch is cut into P row blocks, each running its whole time loop on "
        "its own thread, so the threads never meet inside the loop (splitting every step's matmul across cores "
        "woke the other core at every step: 140–170 µs per GRU step against 40–60 µs, measured side by side). "
        "Same equations as `nn.GRU`/`nn.LSTM` (tests compare outputs and every gradient); a layer's forward + "
        "backward at B = 64 takes 0.45–0.76× the time of this session's first version. A pure-Python version "
        "(`torch.autograd.Function`, 6 ops per step forward and 3 backward) was tried first and ran at 0.98–1.15× of "
        "`nn.GRU`: the gain needs the gate maths in one compiled pass.")
    lines.append(
        "- **Each row block's working memory 256 KB from the next** (`BlockRegions` in `accel/csrc/row_blocks.h`): the "
        "gate pre-activations (or their gradients), dh, dc and the gradient sums that a block's thread writes at "
        "every step. While the two blocks' buffers lay side by side, a two-thread GRU forward pass (T = 22) took "
        "1.19-1.34x as long as one 32-row block on one thread; with them apart 1.06-1.13x (page-aligned regions "
        "with small gaps: no better than side by side). Interleaved against the previous kernels in the real "
        "loop: Rotten Tomatoes GRU +6.0% and +2.4% (two runs), LSTM +0.6%, IMDB GRU +6.4% tokens/s. Results are "
        "bit for bit the same (the blocks' sums are added in the same order).")
    lines.append(
        "- **The first layer looks its words up itself** (`accel.kernels.run_from_table`, `LayerInput` in "
        "`accel/csrc/layer_input.h`): in training, a model's first GRU/LSTM layer gathers each step's rows of x from the "
        "embedding table, with the embedding dropout applied (the same seed and hash as `accel.kernels.dropout`), on each "
        "row block's thread just before the step's matmul; the table's row gradient takes the dropout mask on the "
        "way into its sums. A look-up and a dropout call fewer forward, a dropout call and an autograd node "
        "fewer backward; training is bit for bit the same (tests). Interleaved against the separate calls in the "
        "real loop: Rotten Tomatoes GRU +2.0% and +3.6%, LSTM +0.6% and +1.5%, IMDB GRU +1.5%, LSTM +0.7% tokens/s.")
    lines.append(
        "- **A classifier's training step in one call** (`accel.classifier.loss_and_gradients`, "
        "`classifier_step` in `accel/csrc/step.cpp`): for a one-layer GRU/LSTM classifier with last/max/mean pooling "
        "and a linear head, the whole forward and backward pass (layer from the table, pooling, dropout, head, "
        "cross-entropy, all gradients) is one call that sets every `.grad`, instead of ~40 small torch ops and "
        "autograd's bookkeeping around the layer's kernels (~2 ms of a ~10 ms Rotten Tomatoes step, on one core). "
        "Same values to float rounding (tests); other models keep the modules' way. Interleaved against the "
        "modules' way: Rotten Tomatoes GRU +13.4% and +8.8%, LSTM +14.5% and +11.7%, IMDB GRU +1.8%, LSTM +0.9%.")
    lines.append(
        "- **Threads go to the kernels** (`accel.kernels.threads_to_kernels`): while a step's recurrent layers all run in "
        "the kernels, torch's own remaining ops (embedding look-up, loss, Adam over the small dense parameters) run "
        "on one thread; on 2 threads each woke the second core for less work than the wake-up (Adam over a GRU's "
        "dense parameters: 596 µs on 2 threads, 112 µs on 1). Rotten Tomatoes GRU +19%, IMDB unchanged. "
        "Gradient clipping no longer multiplies every gradient by 1.0 when the norm is within the limit, and the "
        "model zeroes the states over padding only when they are shown.")
    lines.append(
        "- **Compiled dropout** (`accel.kernels.dropout`): torch's CPU `bernoulli_` draws from one sequential generator "
        "at ~9 ns per value (16 ms for an IMDB batch's embeddings); the mask is now a hash of (seed, position) with "
        "the seed drawn from torch's generator, regenerated in the backward pass: 16× faster, the same distribution "
        "(tests check the drop rate, scaling, independence and reproducibility). Interleaved A/B in the real "
        "Trainer: IMDB GRU +11% tokens/s, Rotten Tomatoes GRU +9%.")
    lines.append(
        "- **Freed memory kept for reuse** (`runtime.reuse_freed_memory`, glibc `mallopt`, set at start-up in processes that train): glibc returned every large "
        "temporary to the system when freed, so each step faulted its pages in again (64 MB = 16,384 page faults, "
        "kernel-zeroed); a GRU backward step at T = 400 took 90 µs instead of 41 µs. Large blocks now come from the "
        "heap and up to 1 GB of freed memory is kept. Cost: fragmentation raised the peak RSS of the imdb LSTM "
        "training child below by about 120 MB when torch's LSTM trained it (1.25–1.29 GB against 1.13–1.16 GB "
        "without it, fresh processes); the kernels keep their large outputs in buffers of their own.")
    ad = prof.get("adam_step", [])
    if ad:
        lines.append("- **Fused Adam/AdamW on CPU** (`Trainer._make_optimizer`, `fused=True`): torch's default CPU Adam "
                     "is a per-tensor loop of ~10 element-wise passes, and the embedding table is most of the "
                     "parameters. Step time " + ", ".join(
                         f"vocab {r['vocab_size']:,}: {r['default_ms']['median']:.1f} → {r['fused_ms']['median']:.1f} ms"
                         for r in ad) + " (before the change, 25% of a rotten_tomatoes GRU epoch in py-spy).")
    lines.append(
        "- **The embedding's gradient as rows, one compiled Adam call** (`rnn_demo.accel.sparse_rows`): the table's "
        "gradient is the rows a batch used instead of a zeroed, scattered and twice re-read table-sized tensor; "
        "one call of the compiled library steps the whole table (every row, as exactness demands) and every other "
        "parameter with torch's fused Adam's arithmetic, bit for bit (tests train a model both ways), and clipping's "
        "norm is one compiled sum. Interleaved in the real loop: rows +3% (Rotten Tomatoes GRU) and +5% (IMDB GRU) "
        "tokens/s; the single call and the compiled norm took clipping from 0.31 to 0.21 ms and the optimizer step "
        "from ~0.9 to 0.8 ms of a Rotten Tomatoes GRU step.")
    real = prof.get("flush_denormal_imdb", [])
    fd = prof.get("flush_denormal", [])
    if real or fd:
        rows = real or fd
        lines.append(
            "- **Denormals flushed to zero while training** (`torch.set_flush_denormal(True)` in "
            "`Trainer.iter_steps`): with `pooling=\"last\"` on long texts the gradients flowing back through hundreds "
            "of steps decay into float32 denormals, which x86 processes many times slower. "
            + ("Real Trainer on imdb, same seed and batches, ms per batch kept → flushed: " if real else
               "Synthetic 64×300 step, ms kept → flushed: ")
            + ", ".join(f"{r['cell'].upper()} {r['kept_ms']['median']:.0f} → {r['flushed_ms']['median']:.0f}"
                        for r in rows)
            + ". LSTM is one fused oneDNN kernel (`mkldnn_rnn_layer`) and barely changes; GRU and RNN run ~10 ATen "
              "ops per time step. Caveat: the flag is per thread, so OpenMP worker threads that already exist keep "
              "denormals; at these sizes the recurrent ops run on the calling thread, and flushing before the "
              "thread pool existed measured the same in a side check.")
    prep = prof.get("prepare_data")
    if prep:
        lines.append(f"- **`prepare_data` tokenizes each split once** (it tokenized train and validation twice): "
                     f"{prep['prepare_data_seconds']:.1f} s on imdb now, tokenizing being {prep['share']:.0%} of it.")
    lines.append("- **`OMP_WAIT_POLICY=PASSIVE` by default** (`rnn_demo/__init__.py`): see the threads probe.")
    lines += ["", "Still proposed (not applied):", ""]
    one = next((v for k, v in probe.items() if k.startswith("1 thread")), None)
    passive = next((v for k, v in probe.items() if "PASSIVE" in k), None)
    spin = next((v for k, v in probe.items() if "unset" in k), None)
    if one and passive and spin:
        def fig(v: dict[str, Any], key: str) -> str:
            return f"{v[key]['median']:.0f}" if key in v else "–"

        keys = [k for k in ("rotten_tomatoes_gru_step_ms", "imdb_lstm_step_ms") if k in one]
        cmp = "; ".join(f"{k.split('_step')[0].replace('_', ' ')} step {fig(one, k)} / {fig(passive, k)} / "
                        f"{fig(spin, k)} ms" for k in keys)
        lines.append(
            "1. **Train with one torch thread on small machines.** With PASSIVE waits a second thread no longer "
            "collapses under load, but every parallel region now pays a wake-up, and these models' ops are too small "
            f"to gain from a second core. 1 thread / {threads} threads PASSIVE / {threads} threads spinning "
            f"(load {probe_load(results)}): {cmp}; single-sentence predict p50 {one['predict_p50_ms']['median']:.1f} / "
            f"{passive['predict_p50_ms']['median']:.1f} / {spin['predict_p50_ms']['median']:.1f} ms. The app already "
            "runs the server with 1 thread and workers with cores ÷ max jobs; every CLI command takes `--threads N`. "
            "Proposal: make 1 the CLI default when `os.cpu_count() <= 2`; not applied, because on an idle machine "
            "2 threads were faster in a side run (rotten_tomatoes GRU epoch 1.6 s vs 2.2 s).")
    training = results.get("training", {}).get("result") or {}
    eff = {f"{r['dataset']} {r['cell'].upper()}": r["ours"]["efficiency"]["median"] for r in training.get("configs", [])
           if r["cell"] in ("gru", "lstm")}
    peak = (training.get("matmul_flops_per_second") or {}).get("median")
    at_peak = f"{0.7e9 / peak * 1e3:.1f} ms at this run's large-matmul rate" if peak else "a few ms at the matmul rate"
    lines.append(
        "2. **The Rotten Tomatoes GRU sits near the 0.5 line, and moves with the machine.** A batch of ~1,400 "
        f"tokens carries ~0.7 GFLOP of counted work, {at_peak}; a GRU carries less work per token than an LSTM, "
        "so the fixed costs of a step weigh most. With the one-call step ~82% of a 7-9 ms step is that call (the "
        "layer's kernels, head and row gradient), ~9% the embedding table's exact Adam pass, ~3% collate, the rest "
        "Python bookkeeping and clipping. One 32-row block on one thread, the GRU backward pass runs at 84 GFLOP/s "
        "against 90 for a one-thread large matmul, its forward pass at 63-72 (each step's two matmuls have only "
        "100 and 128 inner products per output; the gate loop is ~10%); inside the loop each call takes longer "
        "again (the second core has slept in between, the table's pass has gone through the caches). Hence "
        + (", ".join(f"{k} {v:.2f}" for k, v in eff.items()) if eff else "the figures above")
        + " of matmul peak. With the same code the Rotten Tomatoes GRU median ranged 0.40-0.55 over 16 runs in "
          "one hour (median 0.475; LSTM 0.49-0.59, median 0.53) on this shared machine. Tried and not kept: the "
          "kernels' threads spinning before they sleep (3 ms: +2-3%; 200 µs: within the noise), transparent huge "
          "pages for the table and its moments (+1%, noise), a numpy collate and an index_select for the last "
          "states (nothing beyond the noise), starting the table's pass early on the idle core (0.5 ms off the "
          "optimizer step, about as much added to the backward kernel).")
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
                    out.append(f"rotten_tomatoes GRU epoch time ours/reference is {ratio:.2f} (target ≤ 0.40; "
                               f"bucketing alone gives {r['length_floor_ratio']:.2f}).")
            if r["cell"] in ("gru", "lstm") and r["ours"]["efficiency"]["median"] < TARGETS["efficiency"]:
                out.append(f"{r['dataset']} {r['cell'].upper()} efficiency {r['ours']['efficiency']['median']:.2f} "
                           "(target ≥ 0.50).")
    inference = results.get("inference", {}).get("result")
    if inference:
        for threads, s in inference["latency"]["by_threads"].items():
            if s["p95"]["median"] > TARGETS["p95_ms"]:
                out.append(f"single-sentence p95 {s['p95']['median']:.1f} ms at {threads} thread(s) (target ≤ 20 ms).")
    worst = results.get("worst_inputs", {}).get("result")
    if worst:
        for name, case in worst["cases"].items():
            if case["traceback"] or case["peak_rss_mb"] > TARGETS["worst_input_rss_mb"]:
                out.append(f"worst input `{name}`: peak {case['peak_rss_mb']:.0f} MB"
                           f"{', printed a traceback' if case['traceback'] else ''} (target ≤ 1 GB, one-line errors).")
    for name, rec in results.items():
        if rec.get("status") not in ("ok", None):
            out.append(f"`{name}`: {rec['status']}.")
    return out


def generic_section(name: str, record: dict[str, Any]) -> list[str]:
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
                 env_note: str, command: str | None = None) -> dict[str, Any]:
    command = command or _shown([sys.executable, *sys.argv])
    figures = key_figures(results)
    env = next((r["result"]["environment"] for r in results.values() if r.get("result", {}).get("environment")), {})
    lines = [
        "# RNN Playground benchmarks",
        "",
        f"`{command}` on {time.strftime('%Y-%m-%d %H:%M')}, {seconds / 60:.1f} min. "
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
    for k, v in figures.items():
        if k.startswith("efficiency ") and k.split("/")[-1] in ("gru", "lstm"):
            target_rows.append([f"hardware efficiency {k.split(' ', 1)[1]} (ours)", f"{v:.2f}", "≥ 0.50",
                                _ok(v, 0.50, lower_is_better=False)])
    for k, v in figures.items():
        if k.startswith("single-sentence p95"):
            target_rows.append([k, f"{v:.2f}", "≤ 20", _ok(v, 20.0)])
    lines += _table(["figure (median)", "value", "target", ""], target_rows) + [""]
    sections = [("training", training_section), ("training", efficiency_section), ("inference", inference_section),
                ("memory", memory_section), ("threads_probe", probe_section), ("profile_costs", profile_section),
                ("worst_inputs", worst_inputs_section)]
    for name, section in sections:
        rec = results.get(name)
        if rec and rec.get("result"):
            lines += section(rec["result"])
        elif rec:
            lines += [f"## {name}", "", f"{rec['status']}", "```", rec.get("stderr_tail", "")[-1500:], "```", ""]
    for name in BENCHMARKS:
        if name in results and name not in BASE_PARSER:
            lines += generic_section(name, results[name])
    lines += recommendations(results)
    missing = unmet(results)
    lines += ["## Unmet", ""] + ([f"- {m}" for m in missing] if missing else ["- none"]) + [""]
    lines += ["## Commands", ""] + [f"- `{r['command']}` ({r.get('seconds', 0):.0f} s, {r['status']})"
                                    for n, r in results.items() if not n.startswith("_") and r.get("command")]
    (common.OUT_DIR / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = {"command": command, "key_figures": figures, "unmet": missing, "threads": args.threads, "omp": env_note,
              "seconds": seconds, "results": results}
    (common.OUT_DIR / "report.json").write_text(json.dumps(report, indent=1, allow_nan=True), encoding="utf-8")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads in every benchmark (default 2)")
    parser.add_argument("--quick", action="store_true", help="a smoke run (~2 min): fewer repetitions and batches")
    parser.add_argument("--only", default="", help="comma-separated subset, e.g. training,inference")
    parser.add_argument("--skip", default="", help="comma-separated benchmarks to leave out, e.g. app_latency")
    parser.add_argument("--omp-wait-policy", choices=["inherit", "passive", "active"], default="inherit",
                        help="OMP_WAIT_POLICY for the benchmarks; inherit (default) = your environment's, else "
                             "rnn_demo's default (PASSIVE), as for `python -m rnn_demo` and the app")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds before a benchmark is abandoned")
    parser.add_argument("--report-only", action="store_true",
                        help="rebuild report.md from the last report.json without running anything")
    args = parser.parse_args()
    if args.report_only:
        previous = json.loads((common.OUT_DIR / "report.json").read_text())
        write_report(previous["results"], args, previous["seconds"], previous["omp"],
                     previous.get("command", "python benchmarks/run_all.py"))
        print(f"report: {common.OUT_DIR / 'report.md'} (rebuilt from report.json)")
        return
    env = dict(os.environ)
    if args.omp_wait_policy != "inherit":
        env["OMP_WAIT_POLICY"] = args.omp_wait_policy.upper()
    env_note = f"OMP_WAIT_POLICY={env.get('OMP_WAIT_POLICY', 'unset (libgomp default: spin, then sleep)')}"
    chosen = [b for b in BENCHMARKS if (not args.only or b in args.only.split(","))
              and b not in args.skip.split(",")]
    common.OUT_DIR.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    results: dict[str, dict[str, Any]] = {"_load": {"start": common.load_average()}}
    for name in chosen:
        results[name] = run_benchmark(name, args, env)
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
