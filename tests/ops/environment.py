"""Every environment variable the project reads, derived from the code: what README's configuration table must list.

Three sources, none a hand-kept list: the pydantic settings classes that :class:`service.settings.Settings` gathers
(their ``env_prefix`` and field names, or the aliases a field accepts), the options of the ``nba`` commands that take
an ``envvar``, and the variables the three packages name in ``os.environ`` directly (``NBA_TRAIN_THREADS``, the MLflow
client's retries that ``nba run`` sets).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
from pydantic import AliasChoices
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

from service.cli import main
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("features", "training", "service")
_ENVIRON = re.compile(r"""os\.environ(?:\.get|\.setdefault|\.pop)?\s*[\(\[]\s*["']([A-Z][A-Z0-9_]*)["']""")


@dataclass(frozen=True)
class Variable:
    """One environment variable, where it is read, and its default when that is a plain value (else None)."""

    name: str
    where: str
    default: str | None


def settings_classes() -> list[type[BaseSettings]]:
    """The settings classes ``nba`` builds from the environment: the fields of :class:`Settings`."""
    classes = []
    for field in Settings.model_fields.values():
        cls = field.annotation
        assert isinstance(cls, type), f"{field} is not a class"
        assert issubclass(cls, BaseSettings), f"{field} is not a settings class"
        classes.append(cls)
    return classes


def shown(value: object) -> str | None:
    """A default as the README writes it (``1000000``, ``2``, ``false``), or None when it is not a plain value."""
    if value is None or value is PydanticUndefined or callable(value):
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float | str | Path):
        return str(value)
    return None


def from_settings() -> Iterator[Variable]:
    """Each settings field's variables: the aliases it takes (``REDIS_URL``, ``NBA_REDIS_URL``), else prefix + name."""
    for cls in settings_classes():
        prefix = str(cls.model_config.get("env_prefix", ""))
        for name, field in cls.model_fields.items():
            alias = field.validation_alias
            if isinstance(alias, AliasChoices):
                names = [c for c in alias.choices if isinstance(c, str) and c.isupper()]
            elif isinstance(alias, str):
                names = [alias]
            else:
                names = [f"{prefix}{name}".upper()]
            for env in names:
                yield Variable(env, f"{cls.__name__}.{name}", shown(field.default))


def _commands(command: click.Command, path: str) -> Iterator[tuple[str, click.Command]]:
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from _commands(sub, f"{path} {name}")


def from_options() -> Iterator[Variable]:
    """The ``nba`` commands' options that read a variable (``--demo-customers``: ``NBA_DEMO_CUSTOMERS``)."""
    for path, command in _commands(main, "nba"):
        for param in command.params:
            envvars = [param.envvar] if isinstance(param.envvar, str) else list(param.envvar or ())
            for env in envvars:
                yield Variable(env, f"{path} {param.opts[0]}", shown(param.default))


def from_source() -> Iterator[Variable]:
    """Variables the packages read (or set for a library) through ``os.environ`` by name."""
    for package in PACKAGES:
        for file in sorted((ROOT / package).rglob("*.py")):
            for env in _ENVIRON.findall(file.read_text()):
                yield Variable(env, str(file.relative_to(ROOT)), None)


def variables() -> dict[str, list[Variable]]:
    """Every variable by name, with each place that reads it."""
    found: dict[str, list[Variable]] = {}
    for var in [*from_settings(), *from_options(), *from_source()]:
        found.setdefault(var.name, []).append(var)
    return found
