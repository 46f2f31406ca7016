"""Progress bars for the command line, fed by the library's and the services' callbacks."""

from __future__ import annotations

import time
from typing import Any

from tqdm import tqdm

from robustness.training import Callbacks, EpochStats


class TqdmCallbacks(Callbacks):
    """One bar over all remaining steps, with loss, error and throughput; a line per epoch."""

    def __init__(self, *, batch_size: int, disable: bool = False) -> None:
        self.batch_size = batch_size
        self.disable = disable
        self.bar: tqdm | None = None
        self.epoch_started = 0.0

    def on_start(self, *, start_epoch: int, epochs: int, steps_per_epoch: int) -> None:
        total = max(epochs - start_epoch + 1, 0) * steps_per_epoch
        self.bar = tqdm(
            total=total,
            unit="step",
            disable=self.disable,
            dynamic_ncols=True,
            desc=f"epoch {start_epoch}/{epochs}",
        )
        self.epochs = epochs
        self.epoch_started = time.perf_counter()

    def on_step(self, *, epoch: int, step: int, loss: float | None, error: float | None) -> None:
        assert self.bar is not None
        self.bar.update(1)
        if step == 1:
            self.epoch_started = time.perf_counter()
            self.bar.set_description(f"epoch {epoch}/{self.epochs}")
        if loss is not None and error is not None:
            elapsed = max(time.perf_counter() - self.epoch_started, 1e-9)
            self.bar.set_postfix(
                loss=f"{loss:.4f}",
                err=f"{100 * error:.2f}%",
                img_s=f"{step * self.batch_size / elapsed:.0f}",
            )

    def on_epoch_end(self, stats: EpochStats, history: list[dict[str, Any]]) -> None:
        if self.bar is not None:
            self.bar.write(
                f"epoch {stats.epoch}: loss {stats.train_loss:.4f}, train error "
                f"{100 * stats.train_error:.2f}%, valid error {100 * stats.valid_error:.2f}%, "
                f"{stats.images_per_second:.0f} img/s, lr {stats.lr:.2e}"
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class Bars:
    """One tqdm bar per named job, fed by ``progress(name, done, total)`` callbacks.

    ``bars.for_name(name)`` gives a ``(done, total)`` callback for one name (an attack's chunks).
    """

    def __init__(self, *, disable: bool, unit: str = "img") -> None:
        self.disable = disable
        self.unit = unit
        self.bars: dict[str, tqdm] = {}

    def __call__(self, name: str, done: int, total: int) -> None:
        bar = self.bars.get(name)
        if bar is None:
            bar = self.bars[name] = tqdm(
                total=total, initial=done, desc=name, unit=self.unit, disable=self.disable
            )
        else:
            bar.update(done - bar.n)
        if done >= total:
            bar.close()

    def for_name(self, name: str):  # noqa: ANN201 — a (done, total) callback
        return lambda done, total: self(name, done, total)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def wait_with_bar(job: Any, *, disable: bool = False) -> Any:
    """Wait for a queued job (a parent: all its cells) with a tqdm bar; its final row."""
    from robustness.registry.jobs import job_wait

    bar = tqdm(total=None, unit="job", desc=f"job {job.pk}", disable=disable, dynamic_ncols=True)
    try:

        def show(done: int, total: int) -> None:
            bar.total = total or None
            bar.n = done
            bar.refresh()

        return job_wait(job, on_progress=show)
    finally:
        bar.close()
