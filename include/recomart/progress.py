"""Progress for long work, on stderr: rich's live display on a terminal, timed lines in a log.

On a terminal, :class:`Board` shows one spinner line per component being waited for and
:func:`counting` a bar; redirected to a file or a pipe (CI, ``nohup``, a test), both fall back to a
plain line every ``every_s`` seconds, so a log shows that the work is alive and how far it got.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

EVERY_S = 10.0


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False)


class Board:
    """What is being waited for: a spinner per item on a terminal, else a line per change and every
    ``every_s`` seconds a line naming what is still pending. Use as a context manager."""

    def __init__(self, console: Console | None = None, every_s: float = EVERY_S) -> None:
        self.console = console or stderr_console()
        self.every_s = every_s
        self._progress = (
            Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=self.console)
            if self.console.is_terminal
            else None
        )
        self._pending: dict[str, tuple[float, TaskID | None]] = {}
        self._last_line = time.monotonic()

    def __enter__(self) -> Board:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def add(self, label: str) -> None:
        """Start waiting for ``label`` (a label already pending keeps its start)."""
        if label in self._pending:
            return
        task = self._progress.add_task(f"{label}: starting", total=None) if self._progress else None
        self._pending[label] = (time.monotonic(), task)
        if self._progress is None:
            self._line(f"waiting for {label}")

    def waited(self, label: str) -> float:
        """Seconds since ``label`` was added."""
        return time.monotonic() - self._pending[label][0]

    def finish(self, label: str, outcome: str) -> None:
        """``label`` is done (``outcome``: e.g. "healthy" or "exited"); shows how long it took."""
        started, task = self._pending.pop(label)
        text = f"{label}: {outcome} after {time.monotonic() - started:.1f} s"
        if self._progress is not None and task is not None:
            self._progress.update(task, description=text, completed=1, total=1)
            self._progress.stop_task(task)
        else:
            self._line(text)

    def tick(self) -> None:
        """Call from the wait loop: off a terminal, a line every ``every_s`` seconds while items are pending."""
        if self._progress is not None or not self._pending or time.monotonic() - self._last_line < self.every_s:
            return
        now = time.monotonic()
        waiting = ", ".join(f"{label} ({now - started:.0f} s)" for label, (started, _) in self._pending.items())
        self._line(f"still waiting for {waiting}")

    def _line(self, text: str) -> None:
        self.console.print(text, soft_wrap=True)
        self._last_line = time.monotonic()


@contextmanager
def step(title: str, console: Console | None = None) -> Iterator[None]:
    """A timed step: a spinner on a terminal, else a start line; always a closing line with the seconds."""
    console = console or stderr_console()
    started = time.monotonic()
    if console.is_terminal:
        with console.status(f"{title} ..."):
            yield
    else:
        console.print(f"{title} ...", soft_wrap=True)
        yield
    console.print(f"{title}: done in {time.monotonic() - started:.1f} s", soft_wrap=True)


@contextmanager
def counting(
    title: str, total: int, unit: str, console: Console | None = None, every_s: float = EVERY_S
) -> Iterator[Callable[[int], None]]:
    """A bar over ``total`` steps (e.g. days); yields ``advance(amount)`` where ``amount`` counts ``unit``
    (e.g. events) done in the step. Off a terminal: a line every ``every_s`` seconds and one at the end."""
    console = console or stderr_console()
    started = last = time.monotonic()
    done, amount = 0, 0
    if console.is_terminal:
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[amount]:,} " + unit),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=console) as bar:
            task = bar.add_task(title, total=total, amount=0)

            def advance_bar(n: int) -> None:
                nonlocal amount
                amount += n
                bar.update(task, advance=1, amount=amount)

            yield advance_bar
        return

    def advance_lines(n: int) -> None:
        nonlocal done, amount, last
        done, amount = done + 1, amount + n
        if time.monotonic() - last >= every_s:
            last = time.monotonic()
            console.print(f"{title}: {done}/{total}, {amount:,} {unit}, {last - started:.0f} s", soft_wrap=True)

    yield advance_lines
    console.print(f"{title}: {done}/{total}, {amount:,} {unit} in {time.monotonic() - started:.1f} s", soft_wrap=True)
