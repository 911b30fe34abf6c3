"""Compiled GRU and LSTM layers for training on the CPU (optional; torch's are the fallback).

The C++ in ``csrc/`` (``layers.cpp``, the GRU and LSTM layers; ``step.cpp``, a classifier's
training step; ``optimizer.cpp``, Adam; ``embedding.cpp``, dropout and the table's row gradient;
shared BLAS and threading helpers in headers) runs a GRU or LSTM layer's whole forward and backward
pass on batch-first tensors as one time loop (the input projection, dx and the weight gradients are
computed step by step inside it, with the gate maths); this module compiles it on first
use (once per machine and torch version, cached in ``<cache>/kernels``), wraps
it in autograd functions and says where it can be used (GRU and LSTM layers, ``CELLS``); a
model's first layer can also look its words up in the embedding table and drop them out itself
(``run_from_table``), and a one-layer classifier's whole training forward and backward pass,
pooling, head and loss included, can run as one call (``classifier_step``). It needs a C++
compiler and ``ninja``; without them, or with ``RNN_DEMO_FUSED=0``, training takes the plain
step (torch's layers and dropout), and nothing else changes.

The cells compute exactly PyTorch's cells (outputs and gradients agree to float32 rounding),
so weights trained either way are interchangeable; inference always uses torch's layers.
``dropout`` replaces torch's CPU dropout while training: the same distribution from a
faster random stream.

    python -m rnn_demo build-kernels   # compile now (``make run`` does)
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import platform
import sysconfig
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)

ENV = "RNN_DEMO_FUSED"  # "0" turns the compiled kernels off
NAME = "rnn_demo_fused_cells"
CSRC = Path(__file__).resolve().parent / "csrc"  # the C++ sources (*.cpp, one object each) and headers (*.h)
# -fopenmp-simd vectorises the gate loops (their exp is inline code); 512-bit vectors where the CPU
# has them (GCC prefers 256). No -ffast-math: it would let the compiler fold away the rounding step
# inside that exp. -fno-math-errno lets sqrt vectorise (it is still correctly rounded), so the
# embedding's Adam step is not left behind torch's.
CFLAGS = ["-O3", "-march=native", "-mprefer-vector-width=512", "-fopenmp-simd", "-fno-math-errno"]

CELLS = (torch.nn.GRU, torch.nn.LSTM)  # the layer types the kernels train (exactly: tests compare them to torch's)

_lock = threading.Lock()
_module: Any = None
_error: str | None = None


def enabled() -> bool:
    """False when ``$RNN_DEMO_FUSED`` is 0/false/no/off."""
    return os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def _build_dir() -> Path:
    """Per machine type, torch version and Python environment: ``-march=native`` code must not run on another
    CPU, and a build is tied to the torch and Python it was compiled against."""
    from rnn_demo.data import default_cache_dir  # data sits above this module

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            cpu = next((line for line in handle if line.startswith("flags")), cpu)
    except OSError:
        pass
    # The build records the include paths of this torch and Python: another environment gets its own folder.
    environment = f"{Path(torch.__file__).resolve().parent}|{sysconfig.get_paths()['include']}"
    sources = "|".join(f"{name}:{text.hex()}" for name, text in _sources().items())
    key = hashlib.sha1(f"{torch.__version__}|{cpu}|{sources}|{CFLAGS}|{environment}".encode()).hexdigest()[:12]
    return default_cache_dir() / "kernels" / f"fused_cells-{key}"


@contextlib.contextmanager
def _build_lock(folder: Path) -> Iterator[None]:
    """Serialises builds between processes with a lock the OS drops when its holder dies.

    torch's own lock is a file that a killed build (a server stopped mid-compile)
    leaves behind, and every later load would wait for it forever; while we hold this
    lock no other process of ours is building, so such a file is stale and removed.
    """
    try:
        import fcntl
    except ImportError:  # Windows: torch's file lock only
        yield
        return
    with open(folder / "rnn_demo.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            (folder / "lock").unlink(missing_ok=True)
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _sources() -> dict[str, bytes]:
    """Every file of ``csrc/`` by name, sorted: what a build compiles (the .cpp files) and includes (the .h)."""
    return {path.name: path.read_bytes() for path in sorted(CSRC.iterdir()) if path.suffix in (".cpp", ".h")}


def _source_copies(folder: Path) -> list[Path]:
    """The kernel sources and headers, copied into their build folder; returns the .cpp copies to compile.
    torch's build records the sources' absolute paths, so compiling the checkout's own files made two
    checkouts on one machine rebuild each other's kernels."""
    compiled = []
    for name, text in _sources().items():
        copy = folder / name
        if not copy.is_file() or copy.read_bytes() != text:
            partial = folder / f".{name}.{os.getpid()}"
            partial.write_bytes(text)
            partial.replace(copy)
        if copy.suffix == ".cpp":
            compiled.append(copy)
    return compiled


def is_built() -> bool:
    """Whether a compiled kernel for this machine and torch version is on disk."""
    return (_build_dir() / f"{NAME}.so").is_file()


def load() -> Any:
    """The compiled module (compiling it on first use), or None when it cannot be built; see ``error()``."""
    global _module, _error
    with _lock:
        if _module is not None or _error is not None:
            return _module
        if not enabled():
            _error = f"turned off by {ENV}=0"
            return None
        start = time.perf_counter()
        try:
            from torch.utils.cpp_extension import load as load_extension

            folder = _build_dir()
            folder.mkdir(parents=True, exist_ok=True)
            with _build_lock(folder):
                sources = [str(path) for path in _source_copies(folder)]
                _module = load_extension(NAME, sources=sources, extra_cflags=CFLAGS, build_directory=str(folder),
                                         verbose=False)
        except Exception as exc:  # no compiler, no ninja, a failed build: torch's GRU does the work
            _error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else exc}"
            logger.warning("the fused GRU/LSTM kernels are not available (%s); training uses torch's layers", _error)
            return None
        logger.info("fused GRU/LSTM kernels ready in %.1f s", time.perf_counter() - start)
        return _module


def loaded() -> Any:
    """The compiled module when this process has loaded it already, else None (never builds or loads it:
    for optional fast paths that must not start a 30 s compile of their own)."""
    return _module


def error() -> str | None:
    """Why the kernel is not available (None when it is, or has not been tried yet)."""
    return _error


class _Layer(torch.autograd.Function):
    """One unidirectional GRU or LSTM layer (``cell``, a torch class) with zero initial state(s), over a
    batch-first input: x (B, T, E) itself, or, with ``ids`` (B, T), the embedding table (V, E) whose rows
    for ids after dropout (p, seed) are x. The table's gradient is then the rows the batch used
    (``rows_gradient``), as ``sparse_rows.embedding`` followed by ``dropout`` would give it."""

    @staticmethod
    def forward(ctx: Any, cell: type, x_or_table: torch.Tensor, ids: torch.Tensor | None, p: float, seed: int,
                padding_idx: int | None, w_ih: torch.Tensor, w_hh: torch.Tensor, b_ih: torch.Tensor,
                b_hh: torch.Tensor) -> torch.Tensor:
        w_ih, w_hh = w_ih.contiguous(), w_hh.contiguous()
        forward, _ = _KERNELS[cell]
        states, x, *saved = getattr(_module, forward)(x_or_table, ids, p, seed, w_ih, b_ih.contiguous(), w_hh,
                                                      b_hh.contiguous())
        ctx.save_for_backward(x, w_ih, w_hh, states, *saved)  # the rest is time-major, for the kernel only
        ctx.cell, ctx.ids, ctx.p, ctx.seed, ctx.padding_idx = cell, ids, p, seed, padding_idx
        ctx.table_shape = x_or_table.shape
        return states  # (B, T, H)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, w_ih, w_hh, states, *saved = ctx.saved_tensors
        _, backward = _KERNELS[ctx.cell]
        dx, dw_ih, dw_hh, *db = getattr(_module, backward)(grad_out.contiguous(), x, w_ih, w_hh, states, *saved,
                                                          ctx.needs_input_grad[1])
        if ctx.ids is not None and dx is not None:
            dx = rows_gradient(ctx.ids, dx, ctx.padding_idx, ctx.table_shape, ctx.p, ctx.seed)
        db_ih, db_hh = db if len(db) == 2 else (db[0], db[0])  # an LSTM's two biases share one gradient
        return None, dx, None, None, None, None, dw_ih, dw_hh, db_ih, db_hh


_KERNELS: dict[type, tuple[str, str]] = {torch.nn.GRU: ("gru_forward", "gru_backward"),
                                         torch.nn.LSTM: ("lstm_forward", "lstm_backward")}


def rows_gradient(ids: torch.Tensor, grad: torch.Tensor, padding_idx: int | None, shape: torch.Size,
                  p: float = 0.0, seed: int = 0) -> torch.Tensor:
    """The gradient of a table of ``shape`` read at ``ids`` (and then, with p > 0, dropped out with
    ``seed``), given the gradient of what was read: a sparse tensor of the sorted unique rows used, the
    padding row left out, each row's gradients added in the order of ids as torch's dense backward adds them."""
    width = grad.shape[-1]
    unique, rows = _module.embedding_rows_backward(
        ids.reshape(-1).contiguous(), grad.reshape(-1, width).contiguous(),
        -1 if padding_idx is None else int(padding_idx), shape[0], p, seed)
    return _row_tensor(unique, rows, shape)


def _row_tensor(unique: torch.Tensor, rows: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """The sparse gradient of a table of ``shape``: ``rows`` at the sorted ``unique`` row numbers, marked
    coalesced (they are, so coalescing would only sort them again)."""
    return torch.sparse_coo_tensor(unique[None], rows, shape, is_coalesced=True, check_invariants=False)


class _Dropout(torch.autograd.Function):
    """Dropout whose mask is a hash of (seed, position): backward regenerates it from the seed."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, p: float, seed: int) -> torch.Tensor:
        ctx.p, ctx.seed = p, seed
        return _module.dropout(x.contiguous(), p, seed)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        return _module.dropout(grad.contiguous(), ctx.p, ctx.seed), None, None


def dropout(x: torch.Tensor, module: torch.nn.Dropout) -> torch.Tensor:
    """``module(x)``, computed by the compiled kernel on the CPU while training (a vectorised hash of
    each position instead of torch's sequential ``bernoulli_`` generator). The same distribution: each
    value is kept with probability 1 − p and scaled by 1/(1 − p); the seed comes from torch's generator,
    so ``torch.manual_seed`` makes it reproducible. Elsewhere (eval mode, GPU, no kernel) it is
    ``module(x)``."""
    seed = _dropout_seed(module, x.device, x.dtype, x.numel())
    return module(x) if seed is None else _Dropout.apply(x, float(module.p), seed)


def _dropout_seed(module: torch.nn.Dropout, device: torch.device, dtype: torch.dtype, numel: int) -> int | None:
    """A seed for the compiled dropout (drawn from torch's generator) when it does ``module``'s work on
    a tensor like this; None when ``module`` does nothing (eval mode, p = 0) or the kernel does not apply."""
    if (module.training and 0.0 < module.p < 1.0 and device.type == "cpu" and dtype == torch.float32
            and numel < 2**32 and load() is not None):
        return int(torch.randint(0, 2**62, (1,)).item())
    return None


def runs(layer: torch.nn.Module) -> bool:
    """Whether the kernels can train ``layer``: a one-layer, one-way float32 CPU layer of ``CELLS`` with
    biases, and the kernels build."""
    return (
        type(layer) in CELLS
        and layer.num_layers == 1
        and not layer.bidirectional
        and layer.bias
        and layer.proj_size == 0
        and all(w.device.type == "cpu" and w.dtype == torch.float32 for w in layer.parameters())
        and load() is not None
    )


@contextlib.contextmanager
def threads_to_kernels(active: bool = True) -> Iterator[None]:
    """While active (a training step whose recurrent layers all run in the kernels): torch's own
    ops run on one thread and the kernels' row blocks on torch's thread count.

    Why: what is left to torch in such a step are small ops (embedding look-up, loss, Adam's step
    over the small dense parameters), and with OpenMP's passive waits each of them woke the second
    core for less work than the waking cost. Both settings are restored on exit, so it is meant for
    one step at a time (trainers interleaved on one thread, as in the race, do not disturb each other).
    """
    module = load() if active else None
    threads = torch.get_num_threads()
    if module is None or threads == 1:
        yield
        return
    module.set_threads(threads)
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        module.set_threads(0)


def threads_for_batch(batch: int) -> int:
    """How many threads the kernels split a batch of this many texts over (1 without the kernels)."""
    module = load()
    return 1 if module is None else int(module.threads_for_batch(batch))


def run(layer: torch.nn.GRU | torch.nn.LSTM, x: torch.Tensor) -> torch.Tensor:
    """``layer(x)[0]`` for a batch-first (B, T, E) input, computed by the fused kernel: (B, T, H),
    contiguous. The kernels work batch-first throughout, so nothing is transposed or copied here."""
    return _Layer.apply(type(layer), x.contiguous(), None, 0.0, 0, None, *_weights(layer))


def fits(ids: torch.Tensor, table: torch.Tensor) -> bool:
    """Whether the kernels can read (B, T) ``ids``' rows of ``table`` (CPU int64 ids; indices within 32 bits)."""
    return (ids.dim() == 2 and ids.dtype == torch.long and ids.device.type == "cpu"
            and ids.numel() * table.shape[1] < 2**32)


def run_from_table(layer: torch.nn.GRU | torch.nn.LSTM, embedding: torch.nn.Embedding, ids: torch.Tensor,
                   dropout: torch.nn.Dropout) -> torch.Tensor:
    """``run(layer, dropout(embedding(ids)))`` in one kernel call, in training where ``runs(layer)`` and
    ``fits(ids, embedding.weight)``: the layer gathers its input rows from the table itself, step by
    step on each row block's thread, with the same dropout values ``dropout`` would draw (one seed
    from torch's generator, the same hash). The table's gradient is the rows the batch used
    (``rows_gradient``), so this is for a table that takes row gradients
    (``rnn_demo.accel.sparse_rows.reads_rows``) or is frozen. Why: a look-up and a dropout call fewer
    forward, a dropout call and an autograd node fewer backward, x written once instead of twice.
    Results are bit for bit those of the separate calls (tests)."""
    table = embedding.weight
    seed = _dropout_seed(dropout, table.device, table.dtype, ids.numel() * table.shape[1])
    p = float(dropout.p) if seed is not None else 0.0
    return _Layer.apply(type(layer), table, ids.contiguous(), p, seed or 0, embedding.padding_idx, *_weights(layer))


POOLING_CODES = {"last": 0, "max": 1, "mean": 2}  # the poolings ``classifier_step`` computes, by the kernel's codes


def classifier_step(layer: torch.nn.GRU | torch.nn.LSTM, embedding: torch.nn.Embedding, dropout: torch.nn.Dropout,
                    head: torch.nn.Linear, pooling: str, ids: torch.Tensor, lengths: torch.Tensor,
                    labels: torch.Tensor, class_weight: torch.Tensor | None = None) -> torch.Tensor:
    """A classifier's training forward and backward pass in one kernel call: ``embedding`` → ``dropout`` →
    ``layer`` → ``pooling`` over each text's real tokens → ``dropout`` → ``head`` → cross-entropy with
    ``labels`` (``nn.CrossEntropyLoss(weight=class_weight)``). Sets every trainable parameter's ``.grad``
    (replacing it) as ``zero_grad(set_to_none=True)`` and ``loss.backward()`` would, the table's as the
    rows the batch used, and returns the loss. The dropout seeds are drawn as the modules' forward pass
    draws them, so the values are those of the modules to float rounding (tests). For where
    ``run_from_table`` applies, with a table that takes row gradients or is frozen and a ``POOLING_CODES``
    pooling.

    Why: around the layer's two kernel calls, the modules' way spends ~40 small ops and autograd's
    bookkeeping, on one core; on short texts that is a large share of the step."""
    table = embedding.weight
    seed = _dropout_seed(dropout, table.device, table.dtype, ids.numel() * table.shape[1])
    pooled_numel = ids.shape[0] * head.in_features  # the head's dropout draws its seed second, as in the model
    head_seed = None if seed is None else _dropout_seed(dropout, table.device, table.dtype, pooled_numel)
    p = float(dropout.p) if seed is not None else 0.0
    padding = -1 if embedding.padding_idx is None else int(embedding.padding_idx)
    weights = _weights(layer)
    w_ih, w_hh, b_ih, b_hh = (w.contiguous() for w in weights)
    loss, unique, rows, *grads = _module.classifier_step(
        isinstance(layer, torch.nn.LSTM), table, ids.contiguous(), lengths.contiguous(), labels.contiguous(), p,
        seed or 0, head_seed or 0, padding, table.requires_grad, w_ih, b_ih, w_hh, b_hh, head.weight.contiguous(),
        head.bias.contiguous(), None if class_weight is None else class_weight.contiguous(), POOLING_CODES[pooling])
    if table.requires_grad:
        table.grad = _row_tensor(unique, rows, table.shape)
    for param, grad in zip((*weights, head.weight, head.bias), grads):
        if param.requires_grad:
            param.grad = grad
    return loss


def _weights(layer: torch.nn.GRU | torch.nn.LSTM) -> tuple[torch.Tensor, ...]:
    return layer.weight_ih_l0, layer.weight_hh_l0, layer.bias_ih_l0, layer.bias_hh_l0
