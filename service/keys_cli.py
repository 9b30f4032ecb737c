"""``nba keys create|list|revoke``: the API keys a service accepts, kept as SHA-256 digests (``service/keys.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click
from rich.console import Console
from rich.table import Table

from features import OfflineSettings
from features.console import settings_from_env
from service.errors import KeyFileError
from service.keys import KeyFile, Role
from service.settings import AuthSettings
from training.console import Reporter, abort

DEMO_PREFIX = "demo-"


def key_file() -> KeyFile:
    """The keys file the environment names: ``NBA_KEYS_FILE``, else ``keys.json`` under ``NBA_DATA_DIR``."""
    auth = settings_from_env(AuthSettings)
    return KeyFile(auth.resolved_keys_file(settings_from_env(OfflineSettings).data_dir))


@contextmanager
def _mistakes() -> Iterator[None]:
    try:
        yield
    except KeyFileError as exc:
        abort(str(exc))


@click.group("keys")
def keys() -> None:
    """API keys and their roles. Only each key's SHA-256 is stored (NBA_KEYS_FILE, by default NBA_DATA_DIR/keys.json);
    a running service takes a change within a second."""


@keys.command("create")
@click.option(
    "--role",
    type=click.Choice([r.value for r in Role]),
    required=True,
    help="desktop: recommend and customer reads; router: assign; events: POST /v1/events; metrics: /metrics; "
    "admin: everything, the erasure included.",
)
@click.option("--name", default=None, help="What to list and revoke it by (letters, digits, . _ -); ROLE-N if unset.")
@click.option(
    "--rate-limit",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Requests per second this key may make per service process (twice that at once); NBA_RATE_LIMIT if unset.",
)
def create(role: str, name: str | None, rate_limit: float | None) -> None:
    """Make a key and print it, once, on stdout (what to keep it as goes to stderr): only its hash is stored."""
    file = key_file()
    with _mistakes():
        key, plain = file.create(Role(role), name, rate_limit=rate_limit)
    Reporter().note(
        f"API key {key.name!r} (role {key.role.value}) created; only its SHA-256 is kept, in {file.path}. "
        "It is shown this once:"
    )
    click.echo(plain)


@keys.command("list")
def list_keys() -> None:
    """Every key: name, role, when it was made, its first characters and its rate limit (never the key)."""
    file = key_file()
    with _mistakes():
        found = file.read()
    if not found:
        abort(f"no API keys in {file.path}: make one with nba keys create --role admin")
    table = Table(show_edge=False, highlight=False)
    for heading in ("name", "role", "created", "starts with", "rate limit"):
        table.add_column(heading)
    for key in found:
        rate = f"{key.rate_limit:g}/s" if key.rate_limit else "default"
        table.add_row(key.name, key.role.value, key.created_at, f"{key.hint}…", rate)
    Console(highlight=False).print(table)


@keys.command("revoke")
@click.argument("name")
def revoke(name: str) -> None:
    """Remove the key called NAME: running services refuse it within a second."""
    file = key_file()
    with _mistakes():
        key = file.revoke(name)
    Reporter().note(f"API key {key.name!r} (role {key.role.value}) revoked: running services refuse it within a second")


def ensure_demo_keys(file: KeyFile, reporter: Reporter, *, make: bool) -> None:
    """What ``nba run`` does about keys: nothing when there are some; else, if ``make``, one key per role, shown once.

    ``nba run`` makes them for the demo on a terminal only: printed into a container's or a service manager's log,
    keys would sit wherever that log goes. Otherwise the line says how to make one.
    """
    with _mistakes():
        found = file.read()
    if found:
        reporter.note(f"API keys: {len(found)} in {file.path} (nba keys list)")
        return
    if not make:
        reporter.note(
            f"API keys: none in {file.path}, so every route but /health and /ready answers 401 until you make one: "
            "nba keys create --role admin (see README, API keys)"
        )
        return
    made = []
    with _mistakes():
        for role in Role:
            _, plain = file.create(role, f"{DEMO_PREFIX}{role.value}")
            made.append((role, plain))
    reporter.note(
        f"API keys: none yet, so one per role was made; only their SHA-256 is kept, in {file.path}. "
        "Shown this once (paste them into the shell you send requests from):"
    )
    for role, plain in made:  # never folded, whatever the terminal's width: a key must paste whole
        reporter.console.print(f"    export NBA_{role.value.upper()}_KEY={plain}", soft_wrap=True)
    reporter.note("  nba keys list shows them, nba keys revoke NAME removes one, nba keys create --role R makes more")
