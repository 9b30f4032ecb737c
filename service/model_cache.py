"""The last-known-good copy of each model bundle the service loaded, on local disk, for starts without MLflow.

Each time the model holder puts a version in force from the registry, that bundle is written here
(``NBA_DATA_DIR/last-known-good/<registered name>/``) unless this version is already here. When MLflow cannot be
reached at start (or the version an alias names cannot be loaded and nothing is in force yet), the holder serves
the copy instead and says so; the copy is never preferred to a registry that answers.

Layout per model: ``v<version>.joblib`` (the bundle as :meth:`ModelBundle.save` writes it) and ``current.json``
(which version, its SHA-256, when it was saved). A copy is written to a temporary name and renamed, then
``current.json`` is replaced the same way: that rename is the commit, so a crash at any point leaves either the old
copy or the new one in force, never half of one, and a file whose SHA-256 does not match is refused at load.
Two service processes sharing a data dir may write the same copy at the same time; each rename is atomic, and each
writes under a temporary name of its own (:func:`tempfile.mkdtemp`, not the process id: replicas in containers on one
volume, compose.yaml's, are each PID 1 or so of their own namespace).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from training import ModelBundle

CURRENT = "current.json"


@dataclass(frozen=True)
class CachedBundle:
    """A bundle read back from disk, with the version it was registered as and when it was saved."""

    bundle: ModelBundle
    version: str
    saved_at: str


class LastKnownGood:
    """The on-disk copies, one per registered model name, under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def version(self, name: str) -> str | None:
        """The version the copy of ``name`` holds, or None when there is none."""
        meta = self._meta(name)
        return None if meta is None else str(meta["version"])

    def save(self, name: str, version: str, bundle: ModelBundle) -> None:
        """Keep ``bundle`` as ``name``'s copy (``version``), unless that version is the copy already."""
        if self.version(name) == version:
            return
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".v{version}.", suffix=".tmp", dir=folder))
        try:
            bundle.save(tmp)  # writes tmp/bundle.joblib
            written = next(tmp.iterdir())
            digest = hashlib.sha256(written.read_bytes()).hexdigest()
            target = folder / f"v{version}.joblib"
            os.replace(written, target)
        finally:
            _remove_tree(tmp)
        saved_at = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        meta = {"version": version, "file": target.name, "sha256": digest, "saved_at": saved_at}
        with tempfile.NamedTemporaryFile("w", prefix=f".{CURRENT}.", suffix=".tmp", dir=folder, delete=False) as out:
            out.write(json.dumps(meta, indent=2) + "\n")
        os.replace(out.name, folder / CURRENT)
        for old in folder.glob("v*.joblib"):
            if old.name != target.name:
                with contextlib.suppress(OSError):
                    old.unlink()

    def load(self, name: str) -> CachedBundle | None:
        """``name``'s copy, or None when there is none; raises ``ValueError`` for a copy that does not check out."""
        meta = self._meta(name)
        if meta is None:
            return None
        path = self.root / name / str(meta["file"])
        raw = path.read_bytes()
        if hashlib.sha256(raw).hexdigest() != meta["sha256"]:
            raise ValueError(f"{path}: its SHA-256 is not the one {CURRENT} recorded")
        return CachedBundle(ModelBundle.load(path), str(meta["version"]), str(meta["saved_at"]))

    def _meta(self, name: str) -> dict[str, object] | None:
        try:
            meta = json.loads((self.root / name / CURRENT).read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return None
        return meta if isinstance(meta, dict) and {"version", "file", "sha256"} <= meta.keys() else None


def _remove_tree(path: Path) -> None:
    if not path.exists():
        return
    for child in path.iterdir():
        with contextlib.suppress(OSError):
            child.unlink()
    with contextlib.suppress(OSError):
        path.rmdir()
