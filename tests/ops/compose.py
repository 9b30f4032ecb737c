"""compose.yaml and the Dockerfile read the way Docker reads them, for tests on a machine without a Docker engine.

Compose's own parser is Go (``docker compose config``); what the tests need of it is small: ``${NAME:-default}``
interpolated, YAML merge keys (``<<: *nba``) resolved, a service's command and environment. The Dockerfile is read
into its instructions, continuation lines joined.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
IMAGE = "nba-copilot:local"
"""The image compose builds from the Dockerfile (every service that runs our code)."""

_VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}")


def variables_used(text: str) -> set[str]:
    """The names ``${...}`` interpolates in ``text``."""
    return {m.group(1) for m in _VARIABLE.finditer(text) if m.group(1)}


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """``${NAME}``, ``${NAME:-default}`` (also when empty) and ``${NAME-default}`` (when unset) as compose does;
    ``$$`` is a literal ``$``."""

    def value(m: re.Match[str]) -> str:
        name, form, default = m.group(1), m.group(2), m.group(3)
        if name is None:
            return "$"
        got = env.get(name)
        if form == ":-" and not got:
            return default
        if form == "-" and got is None:
            return default
        return got or ""

    return _VARIABLE.sub(value, text)


def load(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """compose.yaml with ``env`` interpolated (the file's defaults where it has none)."""
    loaded = yaml.safe_load(interpolate(COMPOSE_FILE.read_text(), env or {}))
    assert isinstance(loaded, dict)
    return loaded


def service(compose: Mapping[str, Any], name: str) -> dict[str, Any]:
    """One service's definition."""
    found = compose["services"][name]
    assert isinstance(found, dict)
    return found


def command(svc: Mapping[str, Any]) -> list[str]:
    """A service's command as an argument list (compose takes a list or a shell-like string)."""
    cmd = svc["command"]
    return shlex.split(cmd) if isinstance(cmd, str) else [str(part) for part in cmd]


def environment(svc: Mapping[str, Any]) -> dict[str, str]:
    """A service's environment as a mapping (compose takes a mapping or ``NAME=value`` items)."""
    env = svc.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def options(argv: list[str]) -> dict[str, str]:
    """``--name value`` pairs of an argument list (the flags that take a value)."""
    return {
        argv[i]: argv[i + 1]
        for i in range(len(argv) - 1)
        if argv[i].startswith("--") and not argv[i + 1].startswith("--")
    }


def replace_options(argv: list[str], values: Mapping[str, str]) -> list[str]:
    """``argv`` with the value after each flag in ``values`` replaced; each flag must be there."""
    out = list(argv)
    for flag, value in values.items():
        assert flag in out, f"{flag} is not in {argv}"
        out[out.index(flag) + 1] = value
    return out


def parse_cli(group: click.Group, argv: list[str]) -> tuple[list[str], dict[str, Any]]:
    """The subcommand path and the parsed parameters of ``argv`` under ``group``, as click would run it; a name or
    an option it does not take raises (click's usage error)."""
    command: click.Command = group
    args = list(argv)
    path: list[str] = []
    while isinstance(command, click.Group):
        name, args = args[0], args[1:]
        sub = command.get_command(click.Context(command), name)
        if sub is None:
            raise click.UsageError(f"{' '.join(path) or group.name} has no command {name!r}")
        path.append(name)
        command = sub
    ctx = command.make_context(" ".join(path), args)
    return path, ctx.params


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction: its keyword (upper case), its text, and the stage it belongs to (0, 1, ...)."""

    keyword: str
    text: str
    stage: int


def dockerfile() -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    instructions: list[Instruction] = []
    stage = -1
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip().removesuffix("\\") + (" " if line.rstrip().endswith("\\") else "")
        if line.rstrip().endswith("\\"):
            continue
        keyword, _, text = pending.strip().partition(" ")
        if keyword.upper() == "FROM":
            stage += 1
        instructions.append(Instruction(keyword.upper(), text.strip(), stage))
        pending = ""
    return instructions


def image_env() -> dict[str, str]:
    """The ENV the final stage sets (``NAME=value`` pairs)."""
    final = max(i.stage for i in dockerfile())
    env: dict[str, str] = {}
    for ins in dockerfile():
        if ins.keyword == "ENV" and ins.stage == final:
            env.update(part.split("=", 1) for part in shlex.split(ins.text))
    return env
