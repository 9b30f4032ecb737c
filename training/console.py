"""What the CLI prints: a line per step with its time, a bar for long ones, and one way out for mistakes."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

from rich.console import Console

from features.console import abort, progress_bar

__all__ = ["Reporter", "abort"]


class Reporter:
    """Prints steps to stderr (stdout stays for data)."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True, highlight=False)

    @contextmanager
    def step(self, title: str) -> Iterator[None]:
        """Announce ``title``, run the block, then say how long it took (or that it failed)."""
        self.console.print(f"[bold]→[/bold] {title}…")
        start = time.perf_counter()
        try:
            yield
        except BaseException:
            self.console.print(f"[red]✗[/red] {title} failed after {time.perf_counter() - start:.1f} s")
            raise
        self.console.print(f"[green]✓[/green] {title} ({time.perf_counter() - start:.1f} s)")

    def note(self, text: str) -> None:
        """A line of information between steps."""
        self.console.print(f"  {text}")

    def bar(self, title: str, total: int) -> AbstractContextManager[Callable[[int, int], None]]:
        """A progress bar; the yielded ``update(done, total)`` moves it."""
        return progress_bar(self.console, title, total)
