"""What every ``nba`` command shares: one way out for user mistakes, settings from the environment, a bar.

It lives in ``features`` because that is the room every other one may import: ``training`` and ``service``
re-use these names rather than keep their own copies, and ``features`` never imports them back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NoReturn, TypeVar

import click
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

T = TypeVar("T")


def abort(message: str) -> NoReturn:
    """Stop the command with one clear line and a non-zero exit: the one way user mistakes leave."""
    raise click.ClickException(message)


def settings_from_env(factory: Callable[[], T]) -> T:
    """Build a settings object from the environment, turning a bad variable into one clear line."""
    try:
        return factory()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        abort(f"invalid environment setting: {problems}")


@contextmanager
def progress_bar(console: Console, title: str, total: int | None = None) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on ``console``; the yielded ``update(done, total)`` moves it.

    ``total`` may be unknown at the start (None) and arrive with the first update, so a caller need not
    count its work twice just to draw the bar.
    """
    with Progress(
        TextColumn("  {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task(title, total=total)

        def update(done: int, of: int) -> None:
            progress.update(task, completed=done, total=of)

        yield update
