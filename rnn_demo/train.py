"""Training: ``TrainConfig`` and a quiet ``Trainer`` that reports through events.

The trainer never prints. It calls ``callback(event)`` with plain dicts, so the
CLI can draw a progress bar and the app can stream events from a worker process:

- ``start``: ``total_steps, steps_per_epoch, epochs, n_train, n_validation, device, num_parameters``
- ``step``: ``step, epoch, epoch_progress, loss, lr, grad_norm, tokens_per_second, elapsed``
- ``eval``: ``step, epoch, val_loss, val_accuracy, val_macro_f1, improved``
- ``epoch``: ``epoch, step, seconds`` (training wall time), ``train_loss, tokens, tokens_per_second``
- ``watch`` (with ``watch_text``, see ``rnn_demo.pacing``): ``step, epoch, probabilities, labels, text``
- ``done``: ``reason`` (completed | early_stopping | stopped | diverged), ``message, best_step,
  best_epoch, best_val_loss, epochs_run, seconds``
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from rnn_demo import accel
from rnn_demo.batching import Batch, BatchLoader
from rnn_demo.config_checks import Limits, check_field_types, check_limits
from rnn_demo.metrics import macro_f1
from rnn_demo.model import RecurrentClassifier
from rnn_demo.pacing import MAX_PACE_SECONDS, Pacer, StopSignal, Watch, check_slow_motion
from rnn_demo.settings import Settings, limits_of, setting

OPTIMIZERS = ("adam", "adamw", "sgd")
DEVICES = ("auto", "cpu", "cuda")

Event = dict[str, Any]
EventCallback = Callable[[Event], None]

# A loss above this multiple of the first step's loss (or of log C, if higher) means training
# diverged: a huge learning rate can blow the loss up to 1e30 and keep it finite.
DIVERGED_LOSS_FACTOR = 1000.0


class TrainingError(RuntimeError):
    """Training cannot go on; the message says why and what to change."""


@dataclass
class TrainConfig(Settings):
    """How a model is trained. Saved in every checkpoint; maps 1:1 to CLI flags."""

    optimizer: str = setting("adam", label="Optimizer", help="adam, adamw or sgd (momentum 0.9)", widget="select",
                             options=OPTIMIZERS, form=3, flag="--optimizer")
    lr: float = setting(2e-3, label="Learning rate", help="initial step size", widget="float",
                        widget_range=(1e-6, 10.0), step=1e-4, format="%.5f", form=2, flag="--lr")
    weight_decay: float = setting(0.0, label="Weight decay", help="L2 penalty", widget="float",  # decoupled for adamw
                                  widget_range=(0.0, 1.0), step=1e-4, format="%.5f", form=4, flag="--weight-decay")
    # The limits of batch_size and epochs bound memory and time.
    batch_size: int = setting(64, label="Batch size", help="examples per step", widget="int", limits=(1, 4096),
                              step=16, form=1, flag="--batch-size")
    epochs: int = setting(8, label="Epochs", help="maximum passes over the training split", widget="int",
                          limits=(1, 200), basic=True, form=0, flag="--epochs")
    patience: int = setting(2, label="Early-stopping patience", widget="int", widget_range=(0, 100), form=5,
                            flag="--patience",
                            help="evaluations without a better validation loss before stopping; 0 = never")
    lr_patience: int = setting(1, label="LR patience", widget="int", widget_range=(0, 100), form=6,  # ReduceLROnPlateau
                               help="evaluations without improvement before the learning rate drops")
    lr_factor: float = setting(0.5, label="LR drop factor", help="multiply the learning rate by this on a plateau",
                               widget="float", widget_range=(0.01, 1.0), step=0.05, format="%.2f", form=7)
    clip: float = setting(1.0, label="Gradient clipping", help="maximum gradient norm; 0 = off", widget="float",
                          widget_range=(0.0, 100.0), step=0.5, format="%.2f", form=8, flag="--clip")
    class_weights: bool = setting(False, label="Class weights", widget="check", form=9, flag="--class-weights",
                                  help="weight the loss by inverse class frequency (imbalanced data)")
    seed: int = setting(0, label="Seed", help="initialisation, dropout and batch order", widget="int",
                        widget_range=(0, 2**31 - 1), form=12, flag="--seed")
    device: str = setting("auto", label="Device", help="auto uses a CUDA GPU when there is one", widget="select",
                          options=DEVICES, form=13, flag="--device")
    eval_every: int = setting(0, label="Evaluate every N steps", widget="int", widget_range=(0, 100_000), form=10,
                              flag="--eval-every",
                              help="extra validation points within an epoch; 0 = once per epoch")
    log_every: int = setting(5, label="Log every N steps", help="how often the training loss is reported",
                             widget="int", widget_range=(1, 10_000), form=11)
    # Slow motion for demos (see rnn_demo.pacing, which checks both; the Train form's slow-motion controls).
    pace_seconds: float = setting(
        0.0, label="Slow motion (seconds per step)", widget="float", widget_range=(0.0, float(MAX_PACE_SECONDS)),
        step=0.1, format="%.1f", flag="--pace", metavar="SECONDS",
        help="For a demo: each training step takes at least this long, so the class can watch the "
             "curves move. 0 = full speed. Training time and speed shown exclude the pauses.")
    watch_text: str = setting(
        "", label="Watch a sentence", widget="text", flag="--watch", metavar="TEXT",
        help="The model's predicted probabilities for this sentence are drawn beside the loss as it "
             "learns (read like a prediction: words outside the vocabulary become <unk>). Empty = none.")

    def __post_init__(self) -> None:
        check_field_types(self)
        check_limits(self)
        check_slow_motion(self)  # pace_seconds and watch_text
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        if self.device not in DEVICES:
            raise ValueError(f"unknown device {self.device!r}; choose one of {', '.join(DEVICES)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.log_every < 1:
            raise ValueError(f"log_every must be at least 1, got {self.log_every}")
        for name in ("patience", "lr_patience", "eval_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")
        if self.clip < 0 or self.weight_decay < 0:
            raise ValueError("clip and weight_decay must not be negative")


TRAIN_LIMITS: Limits = limits_of(TrainConfig)  # a view of the metadata's limits


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when a GPU is usable, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError("device 'cuda' was requested but no CUDA GPU is available; use --device cpu or auto")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seeds Python, NumPy and torch so a CPU run is repeatable."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class EvalResult:
    """Predictions of a model on a whole split, in the split's original order."""

    loss: float
    probs: np.ndarray  # (N, C)
    labels: np.ndarray  # (N,)

    @property
    def accuracy(self) -> float:
        return float((self.probs.argmax(1) == self.labels).mean()) if len(self.labels) else 0.0

    def macro_f1(self) -> float:
        return macro_f1(self.labels, self.probs.argmax(1), self.probs.shape[1])


@torch.inference_mode()
def evaluate(model: RecurrentClassifier, loader: BatchLoader, device: torch.device | str = "cpu") -> EvalResult:
    """Mean cross-entropy and probabilities over a labeled split. Restores train/eval mode."""
    was_training = model.training
    model.eval()
    n = len(loader.encoded)
    probs = torch.zeros(n, model.config.num_classes)
    total_loss = torch.zeros((), dtype=torch.float64)
    for batch in loader:
        batch = batch.to(device)
        logits = model(batch.ids, batch.lengths)
        total_loss += nn.functional.cross_entropy(logits, batch.labels, reduction="sum").double().cpu()
        probs[batch.index] = torch.softmax(logits, dim=-1).float().cpu()
    model.train(was_training)
    return EvalResult(loss=float(total_loss) / max(n, 1), probs=probs.numpy(), labels=loader.encoded.labels.numpy())


@dataclass
class TrainResult:
    """How training ended."""

    reason: str  # completed | early_stopping | stopped | diverged
    message: str
    epochs_run: int
    best_step: int
    best_epoch: int
    best_val_loss: float
    seconds: float
    epoch_seconds: list[float] = field(default_factory=list)
    epoch_tokens_per_second: list[float] = field(default_factory=list)


class Trainer:
    """Trains a model, evaluating on the validation split and keeping the best weights.

    Args:
        model: The classifier (moved to the configured device).
        train_loader: Shuffled training batches.
        val_loader: Validation batches.
        config: Training settings.
        callback: Receives every event; must be quick.
        stop: Optional signal; when set, training ends after the current step and the
            best weights so far are kept.
        watch: The sentence of ``config.watch_text`` read by the run's vocabulary (``Watch.build``).
        on_stage: Told of slow preparations (compiling the training kernels, once per machine).
    """

    def __init__(
        self,
        model: RecurrentClassifier,
        train_loader: BatchLoader,
        val_loader: BatchLoader,
        config: TrainConfig,
        callback: EventCallback | None = None,
        stop: StopSignal | None = None,
        watch: Watch | None = None,
        on_stage: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self.device = resolve_device(config.device)
        self.model = model.to(self.device)
        self.train_loader = train_loader
        self.val_loader = val_loader
        self.callback = callback or (lambda event: None)
        if watch is not None:  # a watch event after every step and eval event
            self.callback = watch.follow(self.model, self.device, self.callback)
        self.stop = stop
        self.optimizer = self._make_optimizer()
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, mode="min", factor=config.lr_factor, patience=config.lr_patience
        )
        weights = self._class_weights() if config.class_weights else None
        self.loss_fn = nn.CrossEntropyLoss(weight=weights)
        self.result: TrainResult | None = None
        self.loss_limit: float | None = None  # a higher loss means divergence; set by the first step
        # The one decision about speed, made once: rnn_demo.accel's compiled step where it applies,
        # else the plain autograd step (forward, loss, backward, clip, optimizer step).
        self._step = accel.plan_step(self.model, config, self.device, optimizer=self.optimizer, loss_fn=self.loss_fn,
                                     loss_ok=self._loss_ok, on_stage=on_stage) or self._plain_step

    def _make_optimizer(self) -> torch.optim.Optimizer:
        params = [p for p in self.model.parameters() if p.requires_grad]
        c = self.config
        # torch's fused Adam updates all parameters in one pass where it can.
        fused_adam = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
        if c.optimizer == "adam":
            return torch.optim.Adam(params, lr=c.lr, weight_decay=c.weight_decay, fused=fused_adam)
        if c.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay, fused=fused_adam)
        return torch.optim.SGD(params, lr=c.lr, momentum=0.9, weight_decay=c.weight_decay)

    def _class_weights(self) -> torch.Tensor:
        counts = torch.bincount(self.train_loader.encoded.labels, minlength=self.model.config.num_classes).float()
        weights = counts.sum() / (len(counts) * counts.clamp(min=1))
        return weights.to(self.device)

    def _stop_requested(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    def _diverged(self, what: str, value: float, step: int) -> str:
        became = f"became {value:g}" if not math.isfinite(value) else f"exploded to {value:.3g}"
        return (f"the {what} {became} at step {step} (learning rate {self.optimizer.param_groups[0]['lr']:g}); "
                "lower the learning rate or keep gradient clipping on")

    def fit(self) -> TrainResult:
        """Runs the training loop to the end.

        Returns:
            How training ended; the model holds the best-validation weights.

        Raises:
            TrainingError: The loss became NaN or infinite before any usable weights existed.
        """
        for _ in self.iter_steps():
            pass
        assert self.result is not None
        return self.result

    def _plain_step(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One optimizer step: (loss, gradient norm before clipping), or (loss, None) without any update
        when the loss is refused (``_loss_ok``)."""
        logits = self.model(batch.ids, batch.lengths)  # forward: (B, C)
        loss = self.loss_fn(logits, batch.labels)
        if not self._loss_ok(loss):
            return loss, None
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip or math.inf)  # 0 = no clip
        self.optimizer.step()
        return loss, grad_norm

    def _loss_ok(self, loss: torch.Tensor) -> bool:
        """Whether a step's loss may update the weights: finite and under ``loss_limit``, which the
        first step sets. The one read of the loss per step (a GPU waits for it)."""
        value = loss.item()
        if self.loss_limit is None:
            self.loss_limit = DIVERGED_LOSS_FACTOR * max(value, math.log(max(2, self.model.config.num_classes)))
        return value <= self.loss_limit  # False for NaN, infinite or exploded

    def iter_steps(self) -> Iterator[int]:
        """The training loop as a generator that yields the step number after every step.

        Lets a caller interleave several trainers in one process (the RNN/GRU/LSTM race).
        When it is exhausted, ``self.result`` holds the ``TrainResult``.

        Raises:
            TrainingError: The loss became NaN or infinite before any usable weights existed.
        """
        c = self.config
        seed_everything(c.seed)
        # Gradients flowing back through hundreds of steps decay into float32 denormals, which x86
        # CPUs process many times slower; values below 1.2e-38 never matter to a weight update.
        # Set here, not at start-up (rnn_demo.runtime), because it is the floating-point mode of the
        # calling thread only, and a trainer may run in a thread of its own (a Ray actor's job).
        torch.set_flush_denormal(True)
        self.train_loader.seed = c.seed
        model, device = self.model, self.device
        steps_per_epoch = len(self.train_loader)
        self.callback({"type": "start", "total_steps": steps_per_epoch * c.epochs, "steps_per_epoch": steps_per_epoch,
                       "epochs": c.epochs, "n_train": len(self.train_loader.encoded),
                       "n_validation": len(self.val_loader.encoded), "device": str(device),
                       "num_parameters": model.num_parameters(), "clip": c.clip})
        best_state = copy.deepcopy(model.state_dict())
        best = {"val_loss": math.inf, "step": 0, "epoch": 0}
        bad_evals = 0
        step = 0
        epochs_run = 0
        reason, message = "completed", f"trained for {c.epochs} epochs"
        epoch_seconds: list[float] = []
        epoch_tps: list[float] = []
        started = time.perf_counter()

        def run_eval(epoch: int) -> tuple[str, str] | None:
            """Evaluates and tracks the best weights; returns (reason, message) when training must end."""
            nonlocal best_state, bad_evals
            result = evaluate(model, self.val_loader, device)
            limit = self.loss_limit if self.loss_limit is not None else math.inf
            exploded = not (math.isfinite(result.loss) and result.loss <= limit)  # never the best weights
            improved = not exploded and result.loss < best["val_loss"]
            if improved:
                best.update(val_loss=result.loss, step=step, epoch=epoch)
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                bad_evals = 0
            else:
                bad_evals += 1
            if not exploded:
                self.scheduler.step(result.loss)
            self.callback(
                {
                    "type": "eval",
                    "step": step,
                    "epoch": epoch,
                    "val_loss": result.loss,
                    "val_accuracy": result.accuracy,
                    "val_macro_f1": result.macro_f1(),
                    "improved": improved,
                }
            )
            if exploded:
                return "diverged", self._diverged("validation loss", result.loss, step)
            if c.patience > 0 and bad_evals >= c.patience:
                return "early_stopping", f"validation loss stopped improving (patience {c.patience})"
            return None

        model.train()
        stop_training = False
        pacer = Pacer(c.pace_seconds, self.stop) if c.pace_seconds > 0 else None
        for epoch in range(1, c.epochs + 1):
            epoch_start = time.perf_counter()
            epoch_loss = torch.zeros((), dtype=torch.float64)
            epoch_tokens = 0
            window_loss, window_steps, window_tokens, window_start = 0.0, 0, 0, time.perf_counter()
            eval_seconds = 0.0
            for i, batch in enumerate(self.train_loader, start=1):
                batch = batch.to(device)
                loss, grad_norm = self._step(batch)
                if grad_norm is None:  # the loss is not finite or exploded; nothing was updated
                    model.load_state_dict(best_state)
                    reason, message, stop_training = "diverged", self._diverged("loss", loss.item(), step + 1), True
                    break
                step += 1
                tokens = int(batch.lengths.sum())
                epoch_tokens += tokens
                window_tokens += tokens
                loss_value = loss.detach()
                epoch_loss += loss_value.double().cpu() * len(batch.lengths)
                window_loss += float(loss_value)
                window_steps += 1
                yield step
                if step % c.log_every == 0 or i == steps_per_epoch or step == 1:  # step 1: the curve starts at once
                    now = time.perf_counter()
                    self.callback(
                        {
                            "type": "step",
                            "step": step,
                            "epoch": epoch,
                            "epoch_progress": i / steps_per_epoch,
                            "loss": window_loss / window_steps,
                            "lr": self.optimizer.param_groups[0]["lr"],
                            "grad_norm": float(grad_norm),
                            "tokens_per_second": window_tokens / max(now - window_start, 1e-9),
                            "elapsed": now - started,
                        }
                    )
                    window_loss, window_steps, window_tokens, window_start = 0.0, 0, 0, time.perf_counter()
                if pacer is not None and (slept := pacer.wait()):  # a pause is neither training time nor speed
                    eval_seconds, window_start = eval_seconds + slept, window_start + slept
                if self._stop_requested():
                    reason, message = "stopped", f"stopped on request at step {step}"
                    stop_training = True
                    break
                if c.eval_every and step % c.eval_every == 0 and i < steps_per_epoch:
                    t0 = time.perf_counter()
                    ending = run_eval(epoch)
                    eval_seconds += time.perf_counter() - t0
                    window_start += time.perf_counter() - t0
                    if ending is not None:
                        (reason, message), stop_training = ending, True
                        break
            train_seconds = time.perf_counter() - epoch_start - eval_seconds
            if reason == "diverged":
                break
            epochs_run = epoch
            epoch_seconds.append(train_seconds)
            epoch_tps.append(epoch_tokens / max(train_seconds, 1e-9))
            n_seen = max(1, len(self.train_loader.encoded))
            self.callback(
                {
                    "type": "epoch",
                    "epoch": epoch,
                    "step": step,
                    "seconds": train_seconds,
                    "train_loss": float(epoch_loss) / n_seen,
                    "tokens": epoch_tokens,
                    "tokens_per_second": epoch_tps[-1],
                }
            )
            if stop_training and reason == "stopped" and step == 0:
                break
            ending = run_eval(epoch)
            if ending is not None and (ending[0] == "diverged" or not stop_training):
                reason, message = ending  # a divergence outranks a stop request, which outranks patience
            if stop_training or ending is not None:
                break

        if reason == "diverged" and not math.isfinite(best["val_loss"]):
            self.callback({"type": "done", "reason": reason, "message": message})
            raise TrainingError(message)
        model.load_state_dict(best_state)
        seconds = time.perf_counter() - started
        result = TrainResult(
            reason=reason,
            message=message,
            epochs_run=epochs_run,
            best_step=best["step"],
            best_epoch=best["epoch"],
            best_val_loss=best["val_loss"],
            seconds=seconds,
            epoch_seconds=epoch_seconds,
            epoch_tokens_per_second=epoch_tps,
        )
        self.result = result
        self.callback(
            {
                "type": "done",
                "reason": reason,
                "message": message,
                "best_step": result.best_step,
                "best_epoch": result.best_epoch,
                "best_val_loss": result.best_val_loss,
                "epochs_run": epochs_run,
                "seconds": seconds,
            }
        )
