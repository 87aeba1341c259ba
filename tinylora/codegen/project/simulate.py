"""The application's console output as numpy computes it (:func:`simulate_app`): the lines a
QEMU run must print, and the README's example."""
from __future__ import annotations

import copy
from collections.abc import Iterable

import numpy as np

from tinylora.errors import InputError

# ---------------------------------------------------------------------------------- the app

def _q10(value: int) -> str:
    """tl_print_q10: three decimals, rounded down."""
    sign = "-" if value < 0 else ""
    m = abs(int(value))
    return f"{sign}{m >> 10}.{((m & 1023) * 1000) >> 10:03d}"


def _percent(part: int, whole: int) -> str:
    """tl_print_percent: one decimal, rounded down."""
    while part > 4000000:
        part, whole = part >> 1, whole >> 1
    permille = part * 1000 // whole if whole > 0 else 0
    return f"{permille // 10}.{permille % 10}%"


def _first_argmax(logits) -> int:
    return int(np.argmax(np.asarray(logits).reshape(-1)))


def simulate_app(trainer, samples: np.ndarray, labels: np.ndarray, epochs: int,
                 checkpoint_every: int, checkpoint_bytes: int, storage: str,
                 can_train: bool = True, serial: Iterable[tuple] = (), model=None,
                 resume_at: int = 0) -> list[str]:
    """The console lines of the generated application (src/main.c), as numpy computes them:
    every line but the ``#`` information lines, in order, from a boot with an empty storage
    or (``resume_at``) with the checkpoint written after that many boot training steps.

    ``serial``: the commands arriving after the boot training, as ``("S", label, sample)``,
    ``("P", sample)``, ``("E",)``, ``("C",)``, ``("?",)`` (prints a ``#`` line: nothing
    here) or ``("!", reason)`` for a line the protocol refuses. ``trainer`` is not changed.
    With ``can_train=False`` (the frozen forward) predictions are ``model.forward``'s."""
    t = copy.deepcopy(trainer)
    x, _ = t.model._check_input(np.asarray(samples))
    y = np.asarray(labels, np.int64).reshape(-1)
    count = len(y)
    out: list[str] = []
    steps = saved = 0

    def predict(inp) -> int:
        if can_train:
            return _first_argmax(t.logits(inp[None]))
        return _first_argmax(np.asarray((model or t.model).forward(inp[None])))

    def evaluate():
        correct = sum(predict(x[i]) == int(y[i]) for i in range(count))
        out.append(f"A 0 {correct}/{count} {_percent(correct, count)}")

    def train(inp, label) -> tuple[int, int]:
        nonlocal steps
        result = t.step(inp[None], int(label))
        steps += 1
        return _first_argmax(result.logits), result.loss

    def checkpoint():
        nonlocal saved
        if can_train and steps != saved:
            saved = steps
            out.append(f"C {steps} {checkpoint_bytes} {storage}")

    def checkpoint_due():
        if can_train and steps % checkpoint_every == 0:
            checkpoint()

    if resume_at and can_train:   # the restored checkpoint: boot training steps taken before
        for k in range(resume_at):
            train(x[k % count], y[k % count])
        saved = steps
    evaluate()
    if can_train:
        boot = epochs * count
        report_every = count // 4 if count >= 8 else 1
        if steps < boot:
            while steps < boot:
                epoch, first = steps // count + 1, steps % count
                seen = correct = loss_sum = 0
                for i in range(first, count):
                    predicted, loss = train(x[i], y[i])
                    seen += 1
                    correct += predicted == int(y[i])
                    loss_sum += loss
                    if (i + 1) % report_every == 0 or i + 1 == count:
                        out.append(f"P {epoch} {i + 1}/{count} correct {correct} mean loss "
                                   f"{_q10(loss_sum // seen)}")
                    checkpoint_due()
                out.append(f"A {epoch} {correct}/{seen} {_percent(correct, seen)}")
            checkpoint()
        evaluate()
    for command in serial:
        kind = command[0]
        if kind in ("S", "P"):
            inp = np.asarray(command[-1], np.int8).reshape(x.shape[1:])
            if kind == "S" and can_train:
                predicted, loss = train(inp, command[1])
                out.append(f"R {int(command[1])} {predicted} {_q10(loss)}")
                checkpoint_due()
            else:
                label = str(int(command[1])) if kind == "S" else "-"
                out.append(f"R {label} {predict(inp)} -")
        elif kind == "E":
            evaluate()
        elif kind == "C":
            checkpoint()
        elif kind == "!":
            out.append(f"! {command[1]}")
        elif kind != "?":
            raise InputError(f"unknown serial command {command!r}")
    checkpoint()   # the input ended
    return out
