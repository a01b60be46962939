"""Pairs of segments: a way's training steps timed against a plain PyTorch loop's, in the same process.

This 2-core machine drifts by more than the gaps that the throughput benchmarks look for (a plain CIFAR step took
2.9-5.0 s within one run), so they time each way *paired*: every ``segment`` training steps a callback runs as many
plain-loop steps, and each pair of segments sees the same machine. Used by ``step_overhead.py`` (LeNet-5 and a
tiny net on MNIST) and ``cifar_throughput.py`` (vgg_cifar_fast).
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from typing import Any, Protocol

from lightning.pytorch import Callback, LightningModule, Trainer


class PlainRun(Protocol):
    def run(self, steps: int) -> float:
        """Mean time per step over ``steps`` plain-loop steps."""
        ...


class Paired(Callback):
    """Every ``segment`` training steps, run ``segment`` plain-loop steps; keep (way step, plain step) pairs.

    Each epoch's first ``warmup`` steps are not timed (the loader's start), nor the run's first pair (one-off
    costs: the first logger write, the first lookahead update). ``plain`` builds the plain loop from the trainer
    when training starts, so that it can take the trainer's own data module; it takes one untimed step there.
    A way's step is timed from one ``on_train_batch_end`` to the next: whole, batch fetch included.
    """

    def __init__(
        self,
        plain: Callable[[Trainer], PlainRun],
        segment: int,
        warmup: int = 1,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.make_plain, self.segment, self.warmup, self.clock = plain, segment, warmup, clock
        self.plain: PlainRun | None = None
        self.pairs: list[tuple[float, float]] = []
        self._start: float | None = None
        self._first_pair_seen = False

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.plain is None:
            self.plain = self.make_plain(trainer)
            self.plain.run(1)

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start = None  # an epoch boundary (validation, checkpoint, the loader's start) is not a step

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        done = batch_idx + 1 - self.warmup  # timed steps of this epoch so far
        if done < 0 or done % self.segment:
            return
        now = self.clock()
        if self._start is not None:
            assert self.plain is not None
            pair = ((now - self._start) / self.segment, self.plain.run(self.segment))
            if self._first_pair_seen:
                self.pairs.append(pair)
            self._first_pair_seen = True
        self._start = self.clock()


def median_summary(values: list[float], draws: int = 2000) -> dict[str, Any]:
    """The median of ``values``, their quartiles, and a seeded 95% bootstrap interval of the median.

    The quartiles are the spread of single pairs; the interval is the uncertainty of the median, the figure that
    says whether a target is met. Seeded, so that the same pairs give the same interval.
    """
    q1, median, q3 = statistics.quantiles(values, n=4)
    rng = random.Random(0)
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(draws))
    return {
        "median": median,
        "quartiles": [q1, q3],
        "interval_95": [medians[int(0.025 * draws)], medians[int(0.975 * draws) - 1]],
    }
