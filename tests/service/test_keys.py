"""The keys file and ``nba keys``: keys shown once and kept only as digests, changes taken by a running service."""

from __future__ import annotations

import io
import json
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from service.cli import main
from service.errors import KeyFileError
from service.keys import RECHECK_S, KeyFile, KeyRing, Role, digest_of
from service.keys_cli import ensure_demo_keys
from training.console import Reporter


def _nba(data_dir: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), env={"NBA_DATA_DIR": str(data_dir), "NBA_KEYS_FILE": None})
    return result.exit_code, result.stdout, result.stderr


def test_create_prints_the_key_once_and_keeps_only_its_digest(tmp_path: Path) -> None:
    code, out, err = _nba(tmp_path, "keys", "create", "--role", "router", "--name", "acd-1")
    assert code == 0, err
    key = out.strip()
    assert key.startswith("nba_")
    assert len(key) == 47
    assert "'acd-1' (role router) created; only its SHA-256 is kept" in err
    file = tmp_path / "keys.json"
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    text = file.read_text()
    assert key not in text
    assert key[8:] not in text  # not even the part after the hint
    (stored,) = json.loads(text)["keys"]
    assert stored["sha256"] == digest_of(key).hex()
    assert (stored["name"], stored["role"], stored["hint"]) == ("acd-1", "router", key[:8])

    code, out, _ = _nba(tmp_path, "keys", "list")
    assert code == 0
    assert "acd-1" in out
    assert "router" in out
    assert f"{key[:8]}…" in out
    assert key not in out


def test_mistakes_end_with_one_line_naming_what_there_is(tmp_path: Path) -> None:
    assert _nba(tmp_path, "keys", "create", "--role", "desktop", "--name", "desk")[0] == 0
    code, _, err = _nba(tmp_path, "keys", "create", "--role", "events", "--name", "desk")
    assert code == 1
    assert "a key named 'desk' exists already" in err
    code, _, err = _nba(tmp_path, "keys", "revoke", "nope")
    assert code == 1
    assert "no API key named 'nope'" in err
    assert "keys: desk" in err
    code, _, err = _nba(tmp_path, "keys", "create", "--role", "desktop", "--name", "has space")
    assert code == 1
    assert "name" in err
    code, _, err = _nba(tmp_path, "keys", "create", "--role", "boss")
    assert code == 2
    assert "'boss' is not one of" in err


def test_default_names_count_up_per_role(tmp_path: Path) -> None:
    file = KeyFile(tmp_path / "keys.json")
    names = [file.create(role)[0].name for role in (Role.DESKTOP, Role.DESKTOP, Role.ADMIN)]
    assert names == ["desktop-1", "desktop-2", "admin-1"]
    file.revoke("desktop-1")
    assert file.create(Role.DESKTOP)[0].name == "desktop-1"


def test_a_running_ring_takes_a_new_key_and_a_revocation_at_its_next_check(tmp_path: Path) -> None:
    now = [100.0]
    file = KeyFile(tmp_path / "keys.json")
    _, kept = file.create(Role.DESKTOP, "kept")
    ring = KeyRing(KeyFile(file.path), clock=lambda: now[0])
    assert ring.lookup(kept) is not None
    assert ring.lookup(kept + "x") is None
    _, added = file.create(Role.ROUTER, "added")
    assert ring.lookup(added) is None, "looked at the file before its check was due"
    now[0] += RECHECK_S
    found = ring.lookup(added)
    assert found is not None
    assert (found.name, found.role) == ("added", Role.ROUTER)
    file.revoke("added")
    now[0] += RECHECK_S
    assert ring.lookup(added) is None
    assert ring.lookup(kept) is not None


def test_an_invalid_file_keeps_the_keys_in_force_and_says_why(tmp_path: Path) -> None:
    now = [0.0]
    file = KeyFile(tmp_path / "keys.json")
    _, key = file.create(Role.ADMIN, "root")
    ring = KeyRing(KeyFile(file.path), clock=lambda: now[0])
    good = file.path.read_text()
    file.path.write_text(good.replace('"role": "admin"', '"role": "boss"'))
    now[0] += RECHECK_S
    assert ring.lookup(key) is not None
    assert ring.error is not None
    assert "keys.0.role" in ring.error
    with pytest.raises(KeyFileError, match=r"keys\.0\.role"):
        file.read()
    file.path.write_text(good)
    now[0] += RECHECK_S
    assert ring.lookup(key) is not None
    assert ring.error is None


def test_no_file_means_no_keys(tmp_path: Path) -> None:
    ring = KeyRing(KeyFile(tmp_path / "absent.json"))
    assert len(ring) == 0
    assert ring.lookup("nba_anything") is None


def test_the_demo_makes_one_key_per_role_once_and_only_when_asked(tmp_path: Path) -> None:
    file = KeyFile(tmp_path / "keys.json")
    out = io.StringIO()
    ensure_demo_keys(file, Reporter(Console(file=out, width=300)), make=False)
    assert not file.path.exists()
    assert "every route but /health and /ready answers 401" in out.getvalue()

    out = io.StringIO()
    ensure_demo_keys(file, Reporter(Console(file=out, width=40)), make=True)
    lines = [line.strip() for line in out.getvalue().splitlines() if "export " in line]
    assert [line.split("=")[0] for line in lines] == [f"export NBA_{r.value.upper()}_KEY" for r in Role]
    ring = KeyRing(file)
    shown = [line.split("=", 1)[1] for line in lines]  # whole on one line each, however narrow the terminal
    assert [ring.lookup(k).name for k in shown] == [f"demo-{r.value}" for r in Role]  # type: ignore[union-attr]

    out = io.StringIO()
    ensure_demo_keys(file, Reporter(Console(file=out, width=200)), make=True)
    assert f"API keys: 5 in {file.path}" in out.getvalue()
    assert "export" not in out.getvalue()
