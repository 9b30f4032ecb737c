"""``nba simulate``: write a simulated contact center's parquet tables, the offline store a model trains on."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import click
from click.decorators import FC
from rich.console import Console
from rich.table import Table

from features import OfflineSettings
from features.console import settings_from_env
from training.console import Reporter, abort
from training.demo import DemoConfig, simulate_world
from training.world.config import WorldSummary

DAYS_PER_MONTH = 30
"""The world moves in 30-day steps (one snapshot, one decision and one churn draw per step)."""
MIN_MONTHS, MAX_MONTHS = 3, 36


def months_for(days: int) -> int:
    """Whole 30-day months covering ``days``: the world cannot stop mid-month, so a part month is simulated."""
    return math.ceil(days / DAYS_PER_MONTH)


def _summary(summary: WorldSummary, out: Path) -> Table:
    table = Table(title=f"written to {out}", title_justify="left", show_edge=False)
    table.add_column("table")
    table.add_column("rows", justify="right")
    table.add_column("size", justify="right")
    rows = {
        "customer_snapshots": summary.customer_snapshots,
        "churn_labels": summary.churn_labels,
        "offers": summary.offers,
        "agent_snapshots": summary.agent_snapshots,
        "contacts": summary.contacts,
        "customer_events": summary.events,
        # The routing oracle's hidden state: what a real contact center never sees; no model reads it.
        "contact_truth": summary.contact_truth,
        "agent_truth": summary.agent_truth,
    }
    for name, count in rows.items():
        size = (out / f"{name}.parquet").stat().st_size
        table.add_row(
            f"{name}.parquet", f"{count:,}", f"{size / 1e6:,.1f} MB" if size >= 1e5 else f"{size / 1e3:.0f} kB"
        )
    return table


def customers_option(default: int) -> Callable[[FC], FC]:
    """The ``--customers`` flag of a command that simulates a world, with its own default."""
    return click.option(
        "--customers",
        type=click.IntRange(1_000, 1_000_000),
        default=default,
        show_default=True,
        help="Customers in the simulated world (1,000 to 1,000,000).",
    )


CUSTOMERS = customers_option(DemoConfig.customers)
AGENTS = click.option(
    "--agents", type=click.IntRange(5, 5_000), default=DemoConfig.agents, show_default=True, help="Agents (5 to 5,000)."
)
"""The world's size flags, shared by ``nba simulate``, ``nba demo`` and (``--agents``) ``nba evaluate``."""


@click.command("simulate")
@CUSTOMERS
@click.option(
    "--days",
    type=click.IntRange(MIN_MONTHS * DAYS_PER_MONTH, MAX_MONTHS * DAYS_PER_MONTH),
    default=180,
    show_default=True,
    help="Days of history written (90 to 1080). The world moves in 30-day months, so this is rounded up "
    "to whole months: --days 100 writes 4 months (120 days). Three warm-up months before them are "
    "simulated but not written, so the first snapshot already has 90 days of events behind it.",
)
@AGENTS
@click.option("--seed", type=int, default=7, show_default=True, help="Seed of every random draw.")
@click.option(
    "--end",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="Date of the last monthly snapshot (YYYY-MM-DD); today (UTC) if unset. The same --seed and --end "
    "(and sizes) write byte-identical tables.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, writable=True, path_type=Path),
    default=None,
    help="Folder for the parquet tables; NBA_DATA_DIR/world (where nba train reads) if unset. Existing "
    "tables there are replaced.",
)
def simulate(customers: int, days: int, agents: int, seed: int, end: datetime | None, out: Path | None) -> None:
    """Simulate a contact center with known ground truth and write its tables as parquet.

    Writes customer_snapshots, customer_events, churn_labels, offers (with the logging policy's
    propensities), contacts and agent_snapshots, the routing oracle's hidden contact_truth and agent_truth,
    plus world.json saying how they were made.
    """
    out = out if out is not None else settings_from_env(OfflineSettings).world_dir
    last: date = end.date() if end is not None else datetime.now(UTC).date()
    months = months_for(days)
    config = DemoConfig(customers=customers, agents=agents, months=months, seed=seed)
    reporter = Reporter()
    if days != months * DAYS_PER_MONTH:
        reporter.note(
            f"--days {days}: the world moves in 30-day months, so {months} months ({months * DAYS_PER_MONTH} days)"
        )
    try:
        with (
            reporter.step(
                f"Simulating {customers:,} customers, {agents:,} agents, {months} months (seed {seed}, ending {last})"
            ),
            reporter.bar("months (+ writing)", months + 4) as bar,
        ):
            _, summary = simulate_world(out, config, end=last, progress=bar)
    except OSError as exc:
        abort(f"--out {out}: cannot write the tables ({exc.strerror or exc})")
    Console(highlight=False).print(_summary(summary, out))
