"""Inference: single-sentence latency and batch throughput of ``Predictor.predict_proba``.

- Latency: ``predict_proba([text])`` on rotten_tomatoes test sentences with the shipped
  ``checkpoints/rotten_tomatoes-gru``, one call at a time, at ``--threads`` and at 1 thread
  (the app server's setting, ``rnn_demo.ui.state.configure_server_process``), rounds interleaved.
- Throughput: ``predict_proba(texts)`` (default batch size 256) on the imdb test split with an
  imdb LSTM: ``--imdb-run`` if given, else the newest imdb LSTM run in the user runs directory
  (``$RNN_DEMO_RUNS``), else one built here and cached in ``benchmarks/out/cache/`` (the default
  imdb settings and vocabulary, trained for a few dozen steps: speed does not depend on the
  weights). The wall time is also split into encoding (tokenize + look-up) and the model.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import common  # first: configure_process() (OpenMP) must run before torch loads
import torch
from rnn_demo.batching import BatchLoader
from rnn_demo.checkpoints import CheckpointError, list_runs, save_run, shipped_runs_dir, user_runs_dir
from rnn_demo.data import DatasetSpec, load_splits
from rnn_demo.experiment import default_configs, prepare_data
from rnn_demo.model import RecurrentClassifier
from rnn_demo.predict import Predictor
from rnn_demo.train import Trainer, seed_everything

CACHED_IMDB_RUN = common.OUT_DIR / "cache" / "imdb-lstm-bench"


def find_imdb_lstm_run(explicit: Path | None, build_steps: int) -> tuple[Path, str]:
    """The imdb LSTM run to measure and a sentence saying which it is."""
    if explicit is not None:
        return explicit, f"{explicit} (given with --imdb-run)"
    for info in list_runs(include_shipped=True):
        spec = info.config.get("dataset", {}).get("spec", {})
        if spec.get("name") == "imdb" and info.cell == "lstm":
            return info.path, f"{info.path} (an imdb LSTM found among the runs, $RNN_DEMO_RUNS={user_runs_dir()})"
    if (CACHED_IMDB_RUN / "config.json").is_file():
        try:
            Predictor.load(CACHED_IMDB_RUN)
            return CACHED_IMDB_RUN, _cached_description()
        except CheckpointError:
            pass
    common.log(f"building an imdb LSTM for the throughput benchmark ({build_steps} training steps)")
    build_imdb_lstm(CACHED_IMDB_RUN, build_steps)
    return CACHED_IMDB_RUN, _cached_description()


def _cached_description() -> str:
    config = json.loads((CACHED_IMDB_RUN / "config.json").read_text())
    steps = config.get("summary", {}).get("train_steps", "?")
    return (f"{CACHED_IMDB_RUN.relative_to(common.ROOT)}: the default imdb LSTM (default_configs('imdb'), "
            f"30,000-token vocabulary, 400-token cap) trained for only {steps} steps by this benchmark; "
            "its accuracy is irrelevant, its speed is that of any imdb LSTM")


def build_imdb_lstm(run_dir: Path, steps: int) -> None:
    """Trains the default imdb LSTM for ``steps`` steps and saves it as a run."""
    spec = DatasetSpec(name="imdb")
    splits = load_splits(spec)
    text_config, model_config, train_config = default_configs("imdb")
    data = prepare_data(splits, text_config)
    model_config = dataclasses.replace(model_config, vocab_size=len(data.vocab), num_classes=len(splits.label_names))
    train_config = dataclasses.replace(train_config, epochs=1, device="cpu")
    seed_everything(0)
    model = RecurrentClassifier(model_config)
    trainer = Trainer(model, BatchLoader(data.train, train_config.batch_size, shuffle=True),
                      BatchLoader(data.validation, 256), train_config)
    step_iter = trainer.iter_steps()
    for _ in range(steps):
        next(step_iter)
    step_iter.close()
    model.eval()
    save_run(run_dir, model, data.vocab, text_config=text_config, train_config=train_config, overwrite=True,
             label_names=splits.label_names,
             dataset={"spec": spec.to_dict(), "name": splits.name, "fingerprint": splits.fingerprint,
                      "sizes": {"train": len(splits.train), "validation": len(splits.validation),
                                "test": len(splits.test)}},
             history=[], metrics={}, summary={"train_steps": steps, "purpose": "benchmarks/inference.py throughput"})


def single_sentence_latency(predictor: Predictor, texts: list[str], calls: int, rounds: int,
                            thread_counts: list[int]) -> dict[str, Any]:
    """p50/p95/p99 (ms) of one-text predict_proba calls per round and thread count, rounds interleaved."""
    per_threads: dict[int, dict[str, list[float]]] = {t: {"p50": [], "p95": [], "p99": [], "mean": []}
                                                       for t in thread_counts}
    for rnd in range(rounds):
        for threads in thread_counts if rnd % 2 == 0 else thread_counts[::-1]:
            torch.set_num_threads(threads)
            for text in texts[:20]:  # warm-up after a thread change
                predictor.predict_proba([text])
            times = []
            for i in range(calls):
                text = texts[i % len(texts)]
                start = time.perf_counter()
                predictor.predict_proba([text])
                times.append((time.perf_counter() - start) * 1e3)
            stats = per_threads[threads]
            stats["p50"].append(common.percentile(times, 50))
            stats["p95"].append(common.percentile(times, 95))
            stats["p99"].append(common.percentile(times, 99))
            stats["mean"].append(sum(times) / len(times))
            common.log(f"latency round {rnd + 1}/{rounds}, {threads} thread(s): p50 {stats['p50'][-1]:.2f} ms, "
                       f"p95 {stats['p95'][-1]:.2f} ms")
    return {str(t): {k: common.spread(v) for k, v in stats.items()} for t, stats in per_threads.items()}


def batch_throughput(predictor: Predictor, texts: list[str], rounds: int) -> dict[str, Any]:
    """Sentences/s of predict_proba(texts), and the same work split into encode + model, per round."""
    rows: dict[str, list[float]] = {"sentences_per_second": [], "seconds": [], "encode_seconds": [],
                                    "model_seconds": [], "tokens_per_second": []}
    predictor.predict_proba(texts[:256])  # warm-up
    tokens = 0
    for rnd in range(rounds):
        with common.Stopwatch() as whole:
            predictor.predict_proba(texts)
        with common.Stopwatch() as enc:
            encoded = predictor.encode(texts)
        with common.Stopwatch() as mod:
            predictor.predict_proba_encoded(encoded)
        tokens = encoded.num_tokens
        rows["seconds"].append(whole.seconds)
        rows["sentences_per_second"].append(len(texts) / whole.seconds)
        rows["tokens_per_second"].append(tokens / whole.seconds)
        rows["encode_seconds"].append(enc.seconds)
        rows["model_seconds"].append(mod.seconds)
        common.log(f"throughput round {rnd + 1}/{rounds}: {len(texts) / whole.seconds:.0f} sentences/s "
                   f"(encode {enc.seconds:.2f}s, model {mod.seconds:.2f}s)")
    return {"texts": len(texts), "tokens_read": tokens, **{k: common.spread(v) for k, v in rows.items()}}


def main() -> None:
    parser = common.base_parser(__doc__.splitlines()[0], "inference.json")
    parser.add_argument("--calls", type=int, default=None, help="single-sentence calls per round (default 300)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per measurement (default 3, quick 2)")
    parser.add_argument("--imdb-texts", type=int, default=None, help="imdb test texts (default all 2,500; quick 500)")
    parser.add_argument("--imdb-run", type=Path, default=None, help="an imdb LSTM run directory to use")
    parser.add_argument("--build-steps", type=int, default=30, help="training steps when an imdb LSTM is built")
    args = parser.parse_args()
    common.setup_torch(args.threads)
    calls = args.calls or (200 if args.quick else 300)
    rounds = args.rounds or (2 if args.quick else 3)
    result: dict[str, Any] = {"environment": common.environment(args.threads)}

    run_dir = shipped_runs_dir() / "rotten_tomatoes-gru"
    predictor = Predictor.load(run_dir)
    texts = load_splits(DatasetSpec(name="rotten_tomatoes")).test.texts
    thread_counts = sorted({args.threads, 1}, reverse=True)
    result["latency"] = {
        "run": str(run_dir.relative_to(common.ROOT)),
        "calls_per_round": calls,
        "rounds": rounds,
        "by_threads": single_sentence_latency(predictor, texts, calls, rounds, thread_counts),
    }
    torch.set_num_threads(args.threads)

    imdb_run, description = find_imdb_lstm_run(args.imdb_run, args.build_steps)
    imdb_predictor = Predictor.load(imdb_run)
    imdb_texts = load_splits(DatasetSpec(name="imdb")).test.texts
    n = args.imdb_texts or (500 if args.quick else len(imdb_texts))
    result["throughput"] = {"run": description, "threads": args.threads,
                            **batch_throughput(imdb_predictor, imdb_texts[:n], rounds)}
    common.write_result(args.out, result)
    for threads, stats in result["latency"]["by_threads"].items():
        print(f"single sentence, {threads} thread(s): p50 {stats['p50']['median']:.2f} ms, "
              f"p95 {stats['p95']['median']:.2f} ms")
    tp = result["throughput"]
    print(f"imdb batch predict_proba: {tp['sentences_per_second']['median']:.0f} sentences/s "
          f"({tp['texts']} texts, {args.threads} threads)")


if __name__ == "__main__":
    main()
