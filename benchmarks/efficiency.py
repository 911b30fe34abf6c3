"""Hardware efficiency: analytic model FLOPs per real token, and the machine's matmul FLOP/s.

What is counted, per real (non-pad) token and per direction of a recurrent layer:

- input projection ``W_ih x``: 2·G·H·E FLOPs,
- recurrent projection ``W_hh h``: 2·G·H·H FLOPs,

with G = 1 (RNN), 3 (GRU), 4 (LSTM) gate blocks; the whole is multiplied by 3 for a
training step (forward, plus backward ≈ 2 × forward: gradients w.r.t. inputs and weights).
Not counted: gate non-linearities and element-wise products (O(G·H), ~1% of the above),
the embedding lookup/scatter, the classifier head (2·H·C once per text, not per token),
the loss and the optimizer step. Padding positions are computed but not counted: they are waste.

Efficiency = FLOPs per real token × real tokens per second ÷ FLOP/s of a large float32
``torch.matmul`` with the same thread count, measured in the same process (``training.py`` samples it
between its timed windows, ``MatmulProbe``).

``python benchmarks/efficiency.py`` prints the analytic table and the matmul peak.
"""

from __future__ import annotations

import time

import common  # first: configure_process() (OpenMP) must run before torch loads
import torch

GATES = {"rnn": 1, "gru": 3, "lstm": 4}


def flops_per_token(cell: str, embedding_dim: int, hidden_size: int, *, training: bool = True,
                    num_directions: int = 1) -> float:
    """Matmul FLOPs per real token of one recurrent layer (see the module docstring)."""
    g = GATES[cell]
    forward = 2 * g * hidden_size * embedding_dim + 2 * g * hidden_size * hidden_size
    return float(forward * num_directions * (3 if training else 1))


class MatmulProbe:
    """Times one ``size × size`` float32 matmul (2·n³ FLOPs) at a time with the current threads, on
    operands made (and a first product taken, for MKL's set-up) once, so that a sample can be taken
    between any two measurements of a run."""

    def __init__(self, size: int = 2048) -> None:
        self.size = size
        self.a = torch.randn(size, size)
        self.b = torch.randn(size, size)
        torch.matmul(self.a, self.b)  # warm-up: allocations and MKL's first-call setup

    def sample(self) -> float:
        """FLOP/s of one matmul."""
        start = time.perf_counter()
        torch.matmul(self.a, self.b)
        return 2 * self.size**3 / (time.perf_counter() - start)


def matmul_flops_per_second(size: int = 2048, repeats: int = 5) -> float:
    """Median FLOP/s of ``repeats`` ``size × size`` float32 matmuls with the current threads."""
    probe = MatmulProbe(size)
    return common.median([probe.sample() for _ in range(repeats)])


def main() -> None:
    args = common.base_parser(__doc__.splitlines()[0], "efficiency.json").parse_args()
    common.setup_torch(args.threads)
    peak = matmul_flops_per_second(1024 if args.quick else 2048)
    print(f"matmul peak: {peak / 1e9:.1f} GFLOP/s with {args.threads} threads")
    for cell in GATES:
        print(f"{cell}: {flops_per_token(cell, 100, 128) / 1e3:.0f} kFLOP per real token (training, E=100, H=128)")


if __name__ == "__main__":
    main()
