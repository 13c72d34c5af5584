"""A live progress bar for a training run: compiling first, then epochs with throughput.

The bar appears when the run starts and says ``compiling`` while XLA compiles
the epoch; its clock restarts once the program is compiled, so the rate and
the ETA describe training only. Each epoch then advances it with the epoch's
mean loss and the examples per second. Labels are shown whole, and
``quiet=True`` shows nothing (for scripts and logs).

Example:
    >>> import io
    >>> from gradchain.app.examples.progress import EpochProgress
    >>> out = io.StringIO()
    >>> with EpochProgress("a rather long label that is not cut at forty characters", 2, 100, file=out) as bar:
    ...     bar.compiled(0.5)
    ...     bar.epoch(0, 0.9, 0.01)
    ...     bar.epoch(1, 0.5, 0.01)
    >>> "not cut at forty characters" in out.getvalue(), "2/2" in out.getvalue()
    (True, True)
"""

from __future__ import annotations

from types import TracebackType
from typing import IO, Any

__all__ = ["EpochProgress"]


class EpochProgress:
    """One bar per run: ``label``, ``epochs`` to go, ``examples`` trained per epoch.

    Args:
        label: what is training (shown whole).
        epochs: the number of epochs.
        examples: examples per epoch, for the throughput.
        quiet: draw nothing.
        file: where to draw (stderr by default).
    """

    def __init__(self, label: str, epochs: int, examples: int, *, quiet: bool = False, file: IO[str] | None = None):
        self.examples = examples
        self._bar: Any = None
        if not quiet:
            from tqdm import tqdm  # an optional dependency (gradchain[examples])

            self._bar = tqdm(total=epochs, desc=label, unit="epoch", file=file, dynamic_ncols=True, leave=True)
            self._bar.set_postfix_str("compiling", refresh=True)

    def compiled(self, seconds: float) -> None:
        """The epoch program is compiled: restart the clock so rates exclude compilation."""
        if self._bar is not None:
            self._bar.reset()
            self._bar.set_postfix_str(f"compiled in {seconds:.1f} s", refresh=True)

    def epoch(self, index: int, loss: float, seconds: float) -> None:
        """Epoch ``index`` ended with mean loss ``loss`` after ``seconds`` of training."""
        if self._bar is not None:
            rate = self.examples / seconds if seconds > 0 else float("inf")
            self._bar.set_postfix_str(f"loss {loss:.3f}, {rate:,.0f} ex/s", refresh=False)
            self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> EpochProgress:
        return self

    def __exit__(self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]) -> None:
        self.close()
