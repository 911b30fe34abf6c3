"""The neuron explorer on the shipped Rotten Tomatoes GRU: cache build time and per-unit look-ups once cached.

    python benchmarks/neurons.py [--run checkpoints/rotten_tomatoes-gru] [--split train] [--threads 1] [--units 50]

Builds the activation cache in a fresh temporary home (cold: data loading and the forward
passes; then a second call that reads it back from disk), then times what the page does
for one unit: its top contexts, histogram and class correlation (median over ``--units``
random units; target < 2 s, we expect milliseconds), and select + match on a sentence.
Threads default to 1, as in the app server. Not part of the test suite.
"""

from __future__ import annotations

import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import common  # noqa: E402  (configure_process() (OpenMP) must run before torch loads)

from rnn_demo.explain import neuron_select, neurons  # noqa: E402
from rnn_demo.predict import Predictor  # noqa: E402

SENTENCE = "the movie was not good at all"
TARGET_SECONDS = 2.0  # top contexts of any unit, once cached (issue #21)


def _timed(fn) -> tuple[object, float]:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def main() -> None:
    parser = common.base_parser(__doc__.splitlines()[0], "neurons.json")
    parser.set_defaults(threads=1)
    parser.add_argument("--run", type=Path, default=ROOT / "checkpoints" / "rotten_tomatoes-gru")
    parser.add_argument("--split", default="train", choices=neurons.NEURON_SPLITS)
    parser.add_argument("--units", type=int, default=50, help="random units timed (default 50)")
    args = parser.parse_args()
    common.setup_torch(args.threads)
    home = tempfile.mkdtemp(prefix="rnn-demo-neurons-")
    os.environ["RNN_DEMO_HOME"] = home  # a cold cache, not the user's
    try:
        _measure(args)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _measure(args) -> None:

    predictor = Predictor.load(args.run)
    common.log(f"building the {args.split} cache of {args.run.name} …")
    cache, build = _timed(lambda: neurons.build_activation_cache(predictor, args.split))
    _, reload = _timed(lambda: neurons.build_activation_cache(predictor, args.split))
    _, strongest = _timed(lambda: neurons.strongest_unit(cache))

    rng = random.Random(0)
    units = [rng.randrange(cache.n_units) for _ in range(max(1, 5 if args.quick else args.units))]
    per_unit = {"top_contexts": [], "histogram": [], "class_correlation": []}
    for unit in units:
        per_unit["top_contexts"].append(_timed(lambda: neurons.top_contexts(cache, unit, k=10))[1])
        per_unit["histogram"].append(_timed(lambda: neurons.activation_histogram(cache, unit))[1])
        per_unit["class_correlation"].append(_timed(lambda: neurons.class_correlation(cache, unit))[1])
    not_token = SENTENCE.split().index("not")
    selection, select_seconds = _timed(
        lambda: neuron_select.select_units(predictor, SENTENCE, (not_token, not_token + 1), cache=cache))
    _, match_seconds = _timed(lambda: neuron_select.match(cache, selection.units, selection.length))

    result = {
        "run": args.run.name,
        "split": args.split,
        "cache": cache.summary(),
        "tokens": cache.n_tokens,
        "units": cache.n_units,
        "cache_megabytes": round(cache.activations.nbytes / 2**20, 1),
        "build_seconds": round(build, 3),
        "reload_seconds": round(reload, 3),
        "strongest_unit_seconds": round(strongest, 3),
        "per_unit_seconds": {name: common.spread(times) for name, times in per_unit.items()},
        "select_seconds": round(select_seconds, 4),
        "match_seconds": round(match_seconds, 4),
        "target_top_contexts_seconds": TARGET_SECONDS,
        "environment": common.environment(args.threads),
    }
    common.write_result(args.out, result)
    top = result["per_unit_seconds"]["top_contexts"]["median"]
    print(f"{cache.summary()}\n"
          f"cache build {build:.2f} s (cold), read back {reload:.2f} s, {result['cache_megabytes']} MB float16\n"
          f"per unit (median of {len(units)}): top contexts {top * 1000:.1f} ms "
          f"(target < {TARGET_SECONDS:g} s: {'met' if top < TARGET_SECONDS else 'MISSED'}), "
          f"histogram {result['per_unit_seconds']['histogram']['median'] * 1000:.1f} ms, "
          f"class correlation {result['per_unit_seconds']['class_correlation']['median'] * 1000:.1f} ms\n"
          f"strongest unit {strongest * 1000:.0f} ms (first call), select {select_seconds * 1000:.0f} ms, "
          f"match {match_seconds * 1000:.0f} ms")


if __name__ == "__main__":
    main()
