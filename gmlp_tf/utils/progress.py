"""Progress on the long steps a user waits on: stage lines, periodic loop lines, Keras prediction.

Everything goes to absl logging (stderr in the scripts), beside the jobs' other lines:

  with progress.stage("Reading the checkpoint gmlp_s16.pth (78.1 MB)"):
      ...
  # I... progress.py:...] Reading the checkpoint gmlp_s16.pth (78.1 MB) ...
  # I... progress.py:...] Reading the checkpoint gmlp_s16.pth (78.1 MB): done in 2.4 s

  for example in progress.log_every(examples, "Decoding answers"):
      ...
  # I... progress.py:...] Decoding answers: 3,072/10,570 (307/s, ETA 24 s)   (at most every 10 s)

  outputs = progress.predict(model, dataset, "Predicting 10,833 windows")

`predict` shows Keras' own progress bar when stdout is a terminal that Keras prints to, and
otherwise logs one periodic line (batches done, rate, ETA) instead of a bar redrawn with
carriage returns into a log file. This module imports only absl and the standard library at
import time (vocabulary training needs no TensorFlow); Keras is imported by `predict`.
"""

import contextlib
import dataclasses
import sys
import time
from typing import Any, Callable, Iterable, Iterator, Optional, TypeVar

from absl import logging

T = TypeVar("T")
Clock = Callable[[], float]
DEFAULT_INTERVAL_S = 10.0


@dataclasses.dataclass
class Stage:
    """What a `stage` block may add to its done line: "<description>: done in 2.4 s (<result>)"."""

    result: str = ""


@contextlib.contextmanager
def stage(description: str, clock: Clock = time.monotonic) -> Iterator[Stage]:
    """Logs "<description> ..." on entry and "<description>: done in 12.3 s" on a normal exit.

    An exception is logged as "<description>: failed after 1.2 s" (a warning) and re-raised; a
    KeyboardInterrupt or other BaseException as "interrupted after". The yielded Stage's `result`
    text, if set, is appended to the done line in parentheses.
    """
    logging.info("%s ...", description)
    start = clock()
    step = Stage()
    try:
        yield step
    except BaseException as err:
        how = "failed" if isinstance(err, Exception) else "interrupted"
        logging.warning("%s: %s after %s", description, how, format_duration(clock() - start))
        raise
    detail = f" ({step.result})" if step.result else ""
    logging.info("%s: done in %s%s", description, format_duration(clock() - start), detail)


def log_every(iterable: Iterable[T], description: str, total: Optional[int] = None,
              interval_s: float = DEFAULT_INTERVAL_S, clock: Clock = time.monotonic) -> Iterator[T]:
    """Yields the items of iterable unchanged, logging "description: i/total (x/s, ETA ...)" at most
    every interval_s seconds.

    total defaults to len(iterable) when it has one (else the line gives the count alone). A loop
    that finishes within interval_s logs nothing; one that logged progress logs a last line with
    the final count when it finishes.
    """
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    throttle = Throttle(description, total, interval_s, clock)
    count = 0
    for item in iterable:
        yield item
        count += 1
        throttle.update(count)
    throttle.finish(count)


class Throttle:
    """Logs progress lines for a count that grows, at most one every interval_s seconds."""

    def __init__(self, description: str, total: Optional[int], interval_s: float = DEFAULT_INTERVAL_S,
                 clock: Clock = time.monotonic, unit: str = "") -> None:
        self.description, self.total, self.interval_s, self.clock, self.unit = (
            description, total, interval_s, clock, unit)
        self.start = self.last_time = clock()
        self.last_count: Optional[int] = None

    def update(self, count: int) -> None:
        """Logs the line for count if interval_s has passed since the last one (or the start)."""
        now = self.clock()
        if now - self.last_time >= self.interval_s:
            self._log(count, now)

    def finish(self, count: int) -> None:
        """Logs the final count, if any line was logged before and it showed less."""
        if self.last_count is not None and self.last_count != count:
            self._log(count, self.clock())

    def _log(self, count: int, now: float) -> None:
        self.last_time, self.last_count = now, count
        logging.info("%s", progress_line(self.description, count, self.total, now - self.start, self.unit))


def progress_line(description: str, count: int, total: Optional[int], elapsed_s: float, unit: str = "") -> str:
    """The line "Decoding answers: 3,072/10,570 (307/s, ETA 24 s)"; the count alone without a total."""
    done = f"{count:,}/{total:,}" if total else f"{count:,}"
    rate = count / elapsed_s if elapsed_s > 0 else 0.0
    parts = [f"{rate:,.0f}/s" if rate >= 10 else f"{rate:.2f}/s"]
    if total and rate > 0 and count < total:
        parts.append(f"ETA {format_duration((total - count) / rate)}")
    return f"{description}: {done}{' ' + unit if unit else ''} ({', '.join(parts)})"


def format_duration(seconds: float) -> str:
    """12.3 s, 4 min 05 s, 1 h 02 min."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def format_bytes(num_bytes: float) -> str:
    """Decimal units: 512 B, 5.2 MB, 1.3 GB."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if num_bytes >= size:
            return f"{num_bytes / size:.1f} {unit}"
    return f"{int(num_bytes)} B"


# ------------------------------------------------------------------------------------------ Keras
def interactive() -> bool:
    """True when Keras' progress bar can redraw in place: stdout is a terminal and Keras prints to it."""
    import keras

    return bool(getattr(sys.stdout, "isatty", lambda: False)()) and keras.config.is_interactive_logging_enabled()


def keras_verbosity() -> int:
    """verbose for Keras predict / evaluate: 1 (the bar) in a terminal, else 0 (see `predict`)."""
    return 1 if interactive() else 0


def predict(model: Any, data: Any, description: str, interval_s: float = DEFAULT_INTERVAL_S,
            clock: Clock = time.monotonic, **kwargs: Any) -> Any:
    """model.predict(data) inside a `stage(description)`, with progress while it runs.

    In a terminal: Keras' own progress bar (verbose=1; the number of batches when the dataset's
    cardinality is known). Otherwise (a log file, a pipe): verbose=0 and a line
    "<description>: 120/1,355 batches (12/s, ETA 1 min 43 s)" at most every interval_s seconds.
    kwargs go to model.predict.
    """
    verbose = keras_verbosity()
    callbacks = list(kwargs.pop("callbacks", None) or [])
    if not verbose:
        callbacks.append(logging_callback(description, interval_s, clock))
    with stage(description):
        return model.predict(data, verbose=verbose, callbacks=callbacks, **kwargs)


def logging_callback(description: str, interval_s: float = DEFAULT_INTERVAL_S, clock: Clock = time.monotonic) -> Any:
    """A keras.callbacks.Callback that logs the progress of predict or evaluate through a Throttle (batches)."""
    import keras

    class _LogPredictProgress(keras.callbacks.Callback):
        def on_predict_begin(self, logs: Optional[dict] = None) -> None:
            self.throttle = Throttle(description, (self.params or {}).get("steps"), interval_s, clock, "batches")
            self.batches = 0

        def on_predict_batch_end(self, batch: int, logs: Optional[dict] = None) -> None:
            self.batches = batch + 1  # With steps_per_execution > 1: the last batch of the execution.
            self.throttle.update(self.batches)

        def on_predict_end(self, logs: Optional[dict] = None) -> None:
            self.throttle.finish(self.batches)

        # evaluate() reports its batches through the test hooks.
        on_test_begin, on_test_batch_end, on_test_end = on_predict_begin, on_predict_batch_end, on_predict_end

    return _LogPredictProgress()
