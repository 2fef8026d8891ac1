"""The catalogue file, re-read whenever it changes, so the gateway never needs a restart.

On a cluster the file is a ConfigMap mounted as a directory (not with `subPath`, which
the kubelet never updates); the kubelet swaps a symlink when the ConfigMap changes, so the
file's inode, size or mtime change. Checking them costs one `stat` per request. A broken
new version is reported and the last good catalogue keeps serving.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
from pathlib import Path

from pydantic import ValidationError

from mtd_contract.catalogue import Catalogue
from mtd_contract.limits import MAX_CATALOGUE_BYTES

log = logging.getLogger(__name__)


class CatalogueUnavailable(RuntimeError):
    """No valid catalogue has been read yet."""


class CatalogueSource:
    """The current catalogue at `path`, reloaded on change."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int, int] | None = None
        self._catalogue: Catalogue | None = None
        self.error: str | None = None
        self.reloads = 0

    def _read_stamp(self) -> tuple[int, int, int, int] | None:
        try:
            info = os.stat(self.path)
        except OSError:
            return None
        return (info.st_ino, info.st_size, info.st_mtime_ns, info.st_mode)

    def current(self) -> Catalogue:
        """The catalogue now: re-read when the file changed; the last good one otherwise."""
        stamp = self._read_stamp()
        with self._lock:
            if stamp != self._stamp:
                self._stamp = stamp
                self._load()
            if self._catalogue is None:
                raise CatalogueUnavailable(self.error or f"{self.path}: no catalogue")
            return self._catalogue

    def _load(self) -> None:
        try:
            text = self._read()
            catalogue = Catalogue.model_validate_json(text)
        except (OSError, UnicodeDecodeError) as exc:
            self.error = f"catalogue {self.path}: {exc}"
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, err['loc'])) or 'catalogue'}: {err['msg']}"
                for err in exc.errors()
            )
            self.error = f"catalogue {self.path}: {problems}"
        else:
            self.error = None
            self._catalogue = catalogue
            self.reloads += 1
            log.info("catalogue %s: %d tasks", self.path, len(catalogue.tasks))
            return
        log.warning("%s (keeping the previous catalogue)", self.error)

    def _read(self) -> str:
        """The file's text; a FIFO, device or directory is refused (reading one would
        block or never end), and so is a file beyond MAX_CATALOGUE_BYTES."""
        with open(self.path, "rb", opener=_nonblocking) as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise OSError(f"{self.path}: not a regular file")
            data = handle.read(MAX_CATALOGUE_BYTES + 1)
        if len(data) > MAX_CATALOGUE_BYTES:
            raise OSError(f"{self.path}: larger than {MAX_CATALOGUE_BYTES} bytes")
        return data.decode("utf-8")


def _nonblocking(path: str, flags: int) -> int:
    """Open without blocking: opening a FIFO for reading waits for a writer otherwise."""
    return os.open(path, flags | os.O_NONBLOCK)
