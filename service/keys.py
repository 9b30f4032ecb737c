"""API keys: who may call the API and in which role, kept as SHA-256 digests in one JSON file.

A key is ``nba_`` and 43 characters of ``secrets.token_urlsafe(32)``: 256 random bits. The file
(``NBA_KEYS_FILE``, by default ``NBA_DATA_DIR/keys.json``, mode 0600) holds each key's name, role, creation time,
its first 8 characters (``hint``: enough to tell which key a person holds, 24 bits of its 256 given away) and the
SHA-256 of the whole key, never the key: ``nba keys create`` prints it once.

Why SHA-256 and not bcrypt or argon2: those make guessing a *low-entropy* secret (a password) expensive after a
leak of its hash. A 256-bit random key cannot be guessed from its SHA-256 whatever the hash costs (2^256 tries), so
a slow hash buys nothing here and would cost every request: bcrypt at its default cost takes about 250 ms, and
even at its lowest cost about 1 ms, a fifth of recommend's whole p99 budget. A fast hash also needs no cache of
verified keys, which would keep plain keys in memory.

Why the check is constant-time where it matters: the service hashes what a client presents and looks the digest
up in a dict keyed by digests (:class:`KeyRing`). What varies with the presented key is the time to hash it (its
length: public) and the dict's probe, which compares Python's (per-process randomised SipHash) hash of the digest
and then the digest's bytes. An attacker choosing keys chooses their digests only through SHA-256, so cannot steer
a digest toward a stored one byte by byte, and learning a stored digest would not yield the key anyway. The
entry found is compared once more with :func:`hmac.compare_digest`, so no early-exit comparison of secret bytes
ever runs. Whether a key is known is what the answer (401 or not) says anyway.

The file is written whole to a temporary file and renamed over the old one, under an advisory lock, so a service
reading it never sees half a file and two ``nba keys`` commands do not lose each other's change. A running
service notices a change within a second (:class:`KeyRing` stats the file at most once a second) and re-reads it:
that is how ``nba keys revoke`` takes effect without a restart.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.errors import KeyFileError

try:  # advisory locking between two `nba keys` commands; absent on Windows, where the rename is still atomic
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("nba.auth")

KEY_PREFIX = "nba_"
"""Every key starts with it, so a secret scanner (or a person) can tell an nba-copilot key in a leaked text."""
HINT_CHARS = 8
"""How much of a key the file keeps in clear to tell keys apart: the prefix and 4 random characters."""
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
RECHECK_S = 1.0
"""How often a running service looks at the keys file's modification time: revocation takes at most this long."""


class Role(StrEnum):
    """What a key may do. ``admin`` may do everything; each other role, its own routes (``service/auth.py``)."""

    DESKTOP = "desktop"
    ROUTER = "router"
    EVENTS = "events"
    METRICS = "metrics"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One key as the service knows it: never the key itself."""

    name: str
    role: Role
    digest: bytes
    created_at: str
    hint: str
    rate_limit: float | None
    """Requests per second this key may make per process, or None for the service's ``NBA_RATE_LIMIT``."""

    def allows(self, role: Role) -> bool:
        """Whether this key may call a route that needs ``role``."""
        return self.role is role or self.role is Role.ADMIN


def new_key() -> str:
    """A fresh key: the prefix and 256 random bits, URL-safe base64."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def digest_of(key: str) -> bytes:
    """The SHA-256 the keys file keeps for ``key``."""
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    role: Role
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    created_at: str
    hint: str = Field(max_length=HINT_CHARS)
    rate_limit: float | None = Field(default=None, gt=0)


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Literal[1] = 1
    keys: list[_Record] = Field(default_factory=list)


def _to_key(record: _Record) -> ApiKey:
    return ApiKey(
        record.name, record.role, bytes.fromhex(record.sha256), record.created_at, record.hint, record.rate_limit
    )


def _to_record(key: ApiKey) -> _Record:
    return _Record(
        name=key.name,
        role=key.role,
        sha256=key.digest.hex(),
        created_at=key.created_at,
        hint=key.hint,
        rate_limit=key.rate_limit,
    )


class KeyFile:
    """The keys file: read by the service, changed by ``nba keys``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> list[ApiKey]:
        """Every key in the file, none when there is no file; :class:`KeyFileError` naming the field if invalid."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise KeyFileError(f"{self.path}: cannot read the API keys file ({exc.strerror})") from exc
        try:
            parsed = _File.model_validate_json(raw)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'file'}: {e['msg']}" for e in exc.errors())
            raise KeyFileError(f"{self.path}: invalid API keys file: {problems}") from exc
        names = [r.name for r in parsed.keys]
        if len(set(names)) != len(names):
            twice = sorted({n for n in names if names.count(n) > 1})
            raise KeyFileError(f"{self.path}: invalid API keys file: name {twice[0]!r} is used twice")
        return [_to_key(r) for r in parsed.keys]

    def create(self, role: Role, name: str | None = None, *, rate_limit: float | None = None) -> tuple[ApiKey, str]:
        """Add a new key; returns it and the key itself, which nothing keeps: show it to the user once.

        ``name`` defaults to the role and the first free number (``desktop-1``, ``desktop-2``, ...).
        """
        plain = new_key()
        with self._locked():
            keys = self.read()
            taken = {k.name for k in keys}
            if name is None:
                name = next(f"{role.value}-{i}" for i in range(1, len(keys) + 2) if f"{role.value}-{i}" not in taken)
            elif not re.fullmatch(NAME_PATTERN, name):
                raise KeyFileError(
                    f"key name {name!r}: letters, digits, '.', '_' and '-' only, at most 64, a letter or digit first"
                )
            elif name in taken:
                raise KeyFileError(f"a key named {name!r} exists already in {self.path}: pick another name")
            if rate_limit is not None and not rate_limit > 0:
                raise KeyFileError(f"rate limit {rate_limit}: a number of requests per second above 0")
            created = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
            key = ApiKey(name, role, digest_of(plain), created, plain[:HINT_CHARS], rate_limit)
            self._write([*keys, key])
        return key, plain

    def revoke(self, name: str) -> ApiKey:
        """Remove the key called ``name``; :class:`KeyFileError` listing the names there are if none is."""
        with self._locked():
            keys = self.read()
            found = [k for k in keys if k.name == name]
            if not found:
                known = ", ".join(k.name for k in keys) or "none"
                raise KeyFileError(f"no API key named {name!r} in {self.path}; keys: {known}")
            self._write([k for k in keys if k.name != name])
        return found[0]

    def _write(self, keys: list[ApiKey]) -> None:
        """Replace the file in one rename, readable by its owner only."""
        body = _File(keys=[_to_record(k) for k in keys]).model_dump_json(indent=2) + "\n"
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(body)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if fcntl is None:  # pragma: no cover
            yield
            return
        with open(self.path.with_name(f".{self.path.name}.lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


class KeyRing:
    """The keys a running service accepts, by digest; re-read within :data:`RECHECK_S` of the file changing.

    The check costs a clock read per request and a ``stat`` of the file once a second. A file that became invalid
    (a hand edit gone wrong) is logged as an error and the keys read before stay in force: taking every client
    down for a typo would be worse, and ``nba keys`` never writes an invalid file.
    """

    def __init__(self, file: KeyFile, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.file = file
        self._clock = clock
        self._by_digest: dict[bytes, ApiKey] = {}
        self._signature: tuple[int, int, int] | None = None
        self._next_check = 0.0
        self.error: str | None = None
        """Why the file's last change could not be read, or None."""
        self.refresh()

    def __len__(self) -> int:
        return len(self._by_digest)

    @property
    def keys(self) -> list[ApiKey]:
        """The keys in force."""
        return list(self._by_digest.values())

    def lookup(self, presented: str, now: float | None = None) -> ApiKey | None:
        """The key whose digest is ``presented``'s, or None."""
        if (self._clock() if now is None else now) >= self._next_check:
            self.refresh()
        digest = digest_of(presented)
        key = self._by_digest.get(digest)
        if key is None or not hmac.compare_digest(key.digest, digest):
            return None
        return key

    def refresh(self) -> None:
        """Re-read the file if it changed since the last read (its mtime, size or inode)."""
        self._next_check = self._clock() + RECHECK_S
        try:
            st = os.stat(self.file.path)
            signature = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            signature = (0, 0, 0)
        except OSError as exc:
            self._failed(f"{self.file.path}: cannot stat the API keys file ({exc.strerror})")
            return
        if signature == self._signature:
            return
        try:
            keys = self.file.read()
        except KeyFileError as exc:
            self._failed(str(exc))
            self._signature = signature  # said once per change, not once a second
            return
        before = len(self._by_digest)
        self._by_digest = {k.digest: k for k in keys}
        if self._signature is not None:
            log.info("API keys re-read from %s: %d keys (were %d)", self.file.path, len(keys), before)
        self._signature = signature
        self.error = None

    def _failed(self, message: str) -> None:
        self.error = message
        log.error("%s; the %d keys read before stay in force", message, len(self._by_digest))
