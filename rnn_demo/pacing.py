"""Slow-motion training for demos: a minimum time per step, and one watched sentence.

A class can then see training happen: with ``TrainConfig.pace_seconds`` each step takes
at least that long (the trainer sleeps only the remainder, and wakes at once on a stop
request), and with ``TrainConfig.watch_text`` the trainer reports the model's class
probabilities for that sentence after every logged step and evaluation (a ``watch``
event: ``step, epoch, probabilities, labels, text``). Both are off by default, and then
the training loop does nothing more than test that they are off.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from rnn_demo.config_checks import check_lengths, check_limits
from rnn_demo.text import UNK_ID, Tokenizer, Vocab

MAX_PACE_SECONDS = 5  # slower than this is no longer a demo; a stop must still feel immediate
MAX_WATCH_CHARS = 1_000  # a sentence; also keeps it under any prediction's token cap (see Watch.build)
_NAP_SECONDS = 0.1  # longest sleep between two looks at a stop signal that has no wait()


class StopSignal(Protocol):
    """Anything with ``is_set()``: ``threading.Event``, ``multiprocessing.Event`` …"""

    def is_set(self) -> bool: ...


def check_slow_motion(config: Any) -> None:
    """Checks a ``TrainConfig``'s ``pace_seconds`` (0 to ``MAX_PACE_SECONDS``) and ``watch_text`` (at most
    ``MAX_WATCH_CHARS`` characters).

    Raises:
        ValueError: A value is out of range; the message names the field and the bound.
    """
    check_limits(config, {"pace_seconds": (0, MAX_PACE_SECONDS)})
    check_lengths(config, {"watch_text": MAX_WATCH_CHARS})


class Pacer:
    """Makes every step take at least ``seconds``, measured from the previous call to :meth:`wait`.

    Args:
        seconds: The least time per step.
        stop: Optional stop signal; the sleep ends as soon as it is set (``wait(timeout)``
            where the signal has one, e.g. ``threading.Event``, else naps of 0.1 s).
    """

    def __init__(self, seconds: float, stop: StopSignal | None = None) -> None:
        self.seconds = seconds
        self.stop = stop
        self.last = time.perf_counter()

    def wait(self) -> float:
        """Sleeps the rest of this step's time; returns the seconds slept (not training time)."""
        start = time.perf_counter()
        deadline = self.last + self.seconds
        wait = getattr(self.stop, "wait", None)
        while (left := deadline - time.perf_counter()) > 0 and not (self.stop is not None and self.stop.is_set()):
            if wait is not None:
                wait(left)
            else:
                time.sleep(min(left, _NAP_SECONDS))
        self.last = time.perf_counter()
        return self.last - start


@dataclass
class Watch:
    """A sentence whose predicted class probabilities are followed during training.

    ``ids`` are read as ``rnn_demo.predict.Predictor.read`` reads a text, so the last watched
    probabilities of a run equal its saved model's prediction for the sentence.
    """

    text: str
    ids: torch.Tensor  # (T,) int64 vocabulary ids, T >= 1
    label_names: list[str]
    last_step: int | None = field(default=None, compare=False)  # the step of the latest watch event

    @classmethod
    def build(cls, text: str, tokenizer: Tokenizer, vocab: Vocab, max_tokens: int | None,
              label_names: Sequence[str]) -> Watch | None:
        """The watch of ``text`` with a run's tokenizer, vocabulary and length cap; None for an empty text.

        ``TrainConfig`` keeps ``text`` under ``MAX_WATCH_CHARS``, so neither of the prediction's
        other caps (characters and tokens of a text without a length cap) can cut it.
        """
        if not text.strip():
            return None
        tokens = tokenizer(text)
        if max_tokens is not None:
            tokens = tokens[:max_tokens]
        ids = torch.tensor(vocab.encode(tokens) or [UNK_ID], dtype=torch.long)
        return cls(text=text, ids=ids, label_names=list(label_names))

    @torch.no_grad()
    def probabilities(self, model: torch.nn.Module, device: torch.device) -> list[float]:
        """The model's class probabilities for the sentence, in eval mode; the model's mode and the
        random number generators' states are restored, so watching does not change training."""
        cpu_state = torch.get_rng_state()
        gpu_state = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
        was_training = model.training
        model.eval()
        try:
            logits = model(self.ids.to(device)[None, :], torch.tensor([len(self.ids)]))  # (1, C)
            return torch.softmax(logits.float(), dim=-1)[0].cpu().tolist()
        finally:
            model.train(was_training)
            torch.set_rng_state(cpu_state)
            if gpu_state is not None:
                torch.cuda.set_rng_state(gpu_state, device)

    def event(self, model: torch.nn.Module, device: torch.device, step: int, epoch: int) -> dict[str, Any]:
        """The ``watch`` event for the model as it is now."""
        self.last_step = step
        return {"type": "watch", "step": step, "epoch": epoch, "probabilities": self.probabilities(model, device),
                "labels": self.label_names, "text": self.text}

    def follow(self, model: torch.nn.Module, device: torch.device,
               callback: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
        """Wraps a trainer's event callback: after every ``step`` and ``eval`` event it also sends a
        ``watch`` event, once per step (an evaluation at a logged step adds none). The trainer calls
        back right after the step or the evaluation, so the probabilities are those of that moment."""

        def emit(event: dict[str, Any]) -> None:
            callback(event)
            if event.get("type") in ("step", "eval") and event["step"] != self.last_step:
                callback(self.event(model, device, event["step"], event["epoch"]))

        return emit
