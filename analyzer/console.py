"""The console a person reads: log lines and progress bars on stderr.

The library logs through :mod:`logging` (loggers under ``analyzer`` and ``protocols``) and never
prints; the CLI installs :class:`ConsoleHandler` with :func:`configure_logging` (``-v`` / ``-q``).
Lines are never wrapped (an address stays on one line, whatever the terminal's width). Progress
bars are drawn on stderr only when it is a terminal, or when ``CONTAGION_PROGRESS=1`` forces them
(``CONTAGION_PROGRESS=0`` turns them off), and never under ``-q``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.text import Text

PROGRESS_ENV = "CONTAGION_PROGRESS"
LOGGERS = ("analyzer", "protocols")

err = Console(stderr=True, highlight=False, soft_wrap=True)
_shown: list[Progress] = []      # the bars on screen: a stage inside another adds its bars to them


class ConsoleHandler(logging.Handler):
    """One unwrapped line per record on stderr: progress dim, warnings prefixed ``warning:``.

    A line already shown is not shown again (a replay reads the fork every round, and each read
    would repeat the scan's warnings); ``-v`` detail (DEBUG) is shown every time.
    """

    def __init__(self) -> None:
        super().__init__()
        self.shown: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
            if record.levelno > logging.DEBUG:
                if message in self.shown:
                    return
                self.shown.add(message)
            if record.levelno >= logging.WARNING and not message.startswith(("warning", "error", "note")):
                message = f"{'warning' if record.levelno == logging.WARNING else 'error'}: {message}"
            console = _shown[-1].console if _shown else err    # above the bars, when they are shown
            console.print(Text(message, style="dim" if record.levelno < logging.WARNING else ""), soft_wrap=True)
        except Exception:  # logging must never raise into the caller
            self.handleError(record)


def configure_logging(verbosity: int = 0) -> None:
    """Log to stderr: progress and results (INFO) by default, details too with ``verbosity`` > 0
    (``-v``), warnings and errors only with ``verbosity`` < 0 (``-q``). Idempotent."""
    level = logging.DEBUG if verbosity > 0 else logging.WARNING if verbosity < 0 else logging.INFO
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, ConsoleHandler)]:
        root.removeHandler(handler)
    root.addHandler(ConsoleHandler())
    for name in LOGGERS:
        logging.getLogger(name).setLevel(level)


def bars_enabled() -> bool:
    """Whether progress bars are drawn (see the module docstring)."""
    forced = os.environ.get(PROGRESS_ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    return err.is_terminal and logging.getLogger("analyzer").isEnabledFor(logging.INFO)


class Bars:
    """The labelled bars of one stage (``update(label, done, total)``); inert when bars are off."""

    def __init__(self, progress: Progress | None):
        self._progress = progress
        self._tasks: dict[str, TaskID] = {}

    def update(self, label: str, done: float, total: float | None = None) -> None:
        if self._progress is None:
            return
        if label not in self._tasks:
            self._tasks[label] = self._progress.add_task(label, total=total)
        self._progress.update(self._tasks[label], completed=done, total=total)

    def advance(self, label: str, n: float = 1.0) -> None:
        if self._progress is not None and label in self._tasks:
            self._progress.advance(self._tasks[label], n)

    def remove(self) -> None:
        if self._progress is not None:
            for task in self._tasks.values():
                self._progress.remove_task(task)
        self._tasks.clear()


class Bar:
    """One bar: ``update(done, total)`` or ``advance(n)``."""

    def __init__(self, bars: Bars, label: str):
        self._bars, self._label = bars, label

    def update(self, done: float, total: float | None = None) -> None:
        self._bars.update(self._label, done, total)

    def advance(self, n: float = 1.0) -> None:
        self._bars.advance(self._label, n)



@contextmanager
def progress_bars(enabled: bool = True) -> Iterator[Bars]:
    """Progress bars on stderr for one stage, one per label (``bars.update("accounts", 10, 200)``).

    Log lines written while they are shown appear above them; a stage inside another adds its bars
    below the outer stage's; without a terminal (and not forced), or not ``enabled``, nothing is drawn.
    """
    if not (enabled and bars_enabled()):
        yield Bars(None)
        return
    if _shown:
        bars = Bars(_shown[-1])
        try:
            yield bars
        finally:
            bars.remove()
        return
    console = err if err.is_terminal else Console(stderr=True, force_terminal=True, highlight=False, soft_wrap=True)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        _shown.append(progress)
        try:
            yield Bars(progress)
        finally:
            _shown.pop()


@contextmanager
def progress_bar(description: str, total: float | None = None, enabled: bool = True) -> Iterator[Bar]:
    """One progress bar for one stage (``with progress_bar("replay rounds", 50) as bar: bar.advance()``)."""
    with progress_bars(enabled) as bars:
        bars.update(description, 0, total)
        yield Bar(bars, description)
