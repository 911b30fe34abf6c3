"""The benchmark scripts run under the package's process-wide settings."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _top_level_imports(path: Path) -> list[str]:
    """The modules a script imports at its top level, in order (``from x import y`` gives x)."""
    names = []
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Import):
            names += [alias.name.split(".")[0] for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("script", sorted(p.name for p in BENCHMARKS.glob("*.py")))
def test_a_benchmark_loads_rnn_demo_s_openmp_settings_before_torch(script):
    # libgomp reads OMP_WAIT_POLICY once, when torch loads it: a script that imports torch before
    # `common` (which calls rnn_demo.runtime.configure_process(), setting PASSIVE) ran with spinning
    # OpenMP threads while its report said PASSIVE.
    names = _top_level_imports(BENCHMARKS / script)
    if "torch" not in names:
        return
    first_torch = names.index("torch")
    assert "common" in names[:first_torch], f"{script} imports torch before common: {names}"


@pytest.mark.parametrize("quick", [False, True])
def test_make_bench_runs_every_measuring_script_with_flags_it_accepts(quick):
    # run_all.py used to guess some scripts' flags from their --help and skip scripts it did not find:
    # now every benchmark it runs is listed with its flags, and each script must accept them.
    import sys

    sys.path.insert(0, str(BENCHMARKS))
    import run_all

    listed = set(run_all.BENCHMARKS)
    not_in_bench = {"classroom.py", "light_client.py", "common.py", "run_all.py", "tutorial_baseline.py",
                    "efficiency.py"}  # the class takes ~10 min; training.py runs the last two; the rest are helpers
    assert {p.stem for p in BENCHMARKS.glob("*.py") if p.name not in not_in_bench} == listed
    shared = (BENCHMARKS / "common.py").read_text(encoding="utf-8")  # base_parser's flags
    for name, (full, fast) in run_all.BENCHMARKS.items():
        source = (BENCHMARKS / f"{name}.py").read_text(encoding="utf-8")
        if "common.base_parser(" in source:
            source += shared
        flags = ["--threads" if f is run_all.THREADS else f for f in (fast if quick else full)
                 if f is run_all.THREADS or f.startswith("-")]
        if name not in run_all.PRINTS_JSON:
            flags.append("--out")
        for flag in flags:
            assert f'"{flag}"' in source, f"{name}.py does not take {flag}"
