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
``torch.matmul`` with the same thread count, measured in the same process.

``python benchmarks/efficiency.py`` prints the analytic table, the matmul peak and, per cell,
the ceiling that the step's matmuls alone reach (``gemm_seconds_per_token``).
"""

from __future__ import annotations

import time

import torch

import common

GATES = {"rnn": 1, "gru": 3, "lstm": 4}


def flops_per_token(cell: str, embedding_dim: int, hidden_size: int, *, training: bool = True,
                    num_directions: int = 1) -> float:
    """Matmul FLOPs per real token of one recurrent layer (see the module docstring)."""
    g = GATES[cell]
    forward = 2 * g * hidden_size * embedding_dim + 2 * g * hidden_size * hidden_size
    return float(forward * num_directions * (3 if training else 1))


def matmul_flops_per_second(size: int = 2048, repeats: int = 5) -> float:
    """Median FLOP/s of ``size × size`` float32 matmuls (2·n³ FLOPs each) with the current threads."""
    a = torch.randn(size, size)
    b = torch.randn(size, size)
    torch.matmul(a, b)  # warm-up: allocations and MKL's first-call setup
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b)
        rates.append(2 * size**3 / (time.perf_counter() - start))
    return common.median(rates)


def gemm_seconds_per_token(cell: str, embedding_dim: int, hidden_size: int, batch: int, steps: int,
                           repeats: int = 5) -> float:
    """Seconds per token of only the matmuls one training step of a (batch × steps) batch must run,
    arranged the way ``rnn_demo.fused`` runs them.

    The input projection of every token, the input gradient and both weight gradients are
    large matmuls with torch's threads. The recurrent matmuls (one (B × H) · (H × G·H) per step
    forward, one (B × G·H) · (G·H × H) backward) run in the kernels as P independent row blocks
    of B/P texts, one per thread, so their wall time is that of one block's matmuls on one
    thread; they are timed so here. Dividing the counted FLOPs by this time gives the
    efficiency of a training loop that had no other cost and no padding: a ceiling for these
    shapes on this machine (assuming the blocks run perfectly in parallel).
    """
    g, e, h = GATES[cell], embedding_dim, hidden_size
    tokens = batch * steps
    threads = torch.get_num_threads()
    rows = -(-batch // threads)
    x, w_ih = torch.randn(tokens, e), torch.randn(g * h, e)
    hid, w_hh, bias = torch.randn(rows, h), torch.randn(g * h, h), torch.randn(g * h)
    d_gates, d_all, states = torch.randn(rows, g * h), torch.randn(tokens, g * h), torch.randn(tokens, h)

    def large() -> None:
        torch.addmm(bias, x, w_ih.t())
        torch.mm(d_all, w_ih)
        torch.mm(d_all.t(), x)
        torch.mm(d_all.t(), states)

    def recurrent() -> None:
        for _ in range(steps):
            torch.addmm(bias, hid, w_hh.t())
        for _ in range(steps):
            torch.addmm(hid, d_gates, w_hh)

    seconds = common.median_seconds(large, repeats)
    torch.set_num_threads(1)
    try:
        seconds += common.median_seconds(recurrent, repeats)
    finally:
        torch.set_num_threads(threads)
    return seconds / tokens


def main() -> None:
    args = common.base_parser(__doc__.splitlines()[0], "efficiency.json").parse_args()
    common.setup_torch(args.threads)
    peak = matmul_flops_per_second(1024 if args.quick else 2048)
    print(f"matmul peak: {peak / 1e9:.1f} GFLOP/s with {args.threads} threads")
    for cell in GATES:
        flops = flops_per_token(cell, 100, 128)
        ceiling = flops / gemm_seconds_per_token(cell, 100, 128, 64, 23) / peak
        print(f"{cell}: {flops / 1e3:.0f} kFLOP per real token (training, E=100, H=128); "
              f"matmuls alone at B=64, T=23 reach {ceiling:.2f} of the peak")


if __name__ == "__main__":
    main()
