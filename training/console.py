"""What the CLI prints: a line per step with its time, a bar for long ones, and one way out for mistakes."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


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

    @contextmanager
    def bar(self, title: str, total: int) -> Iterator[Callable[[int, int], None]]:
        """A progress bar; the yielded ``update(done, total)`` moves it."""
        with Progress(
            TextColumn("  {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        ) as progress:
            task = progress.add_task(title, total=total)

            def update(done: int, of: int) -> None:
                progress.update(task, completed=done, total=of)

            yield update


def abort(message: str) -> None:
    """Stop the command with one clear line and a non-zero exit: the one way user mistakes leave."""
    raise click.ClickException(message)
