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
