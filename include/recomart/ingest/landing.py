"""Where the landing files are, and which of them the loader may read.

A landing folder is often writable by whoever delivers the files.  A symlink placed there could make
the loader read any file it can read (secrets, ``/dev/zero``) into the warehouse, so a file whose real
path (every symlink resolved) leaves the landing folder is refused, unless it lies in a folder the
operator trusts (``link_roots``: the UCI landing links into the configured UCI source folder).  A
refused file is a failure of its date, recorded in the ledger and raised: it is never read, and it is
not a missing file either (that would hide the delivery).
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from datetime import date
from functools import cached_property
from pathlib import Path

from recomart.ingest.feeds import Feed


class LandingFileRefused(ValueError):
    """A landing file the loader will not read (a symlink leaving the landing folder, not a regular file)."""


@dataclass(frozen=True)
class Landing:
    """The landing folder and the folders its symlinks may point into (besides itself)."""

    folder: Path
    link_roots: tuple[Path, ...] = ()

    @cached_property
    def trusted_folders(self) -> tuple[Path, ...]:
        """The landing folder and the link roots, symlinks resolved."""
        return tuple(Path(p).resolve() for p in (self.folder, *self.link_roots))

    def path_for(self, feed: Feed, logical_date: date) -> Path:
        """The file of ``feed`` for ``logical_date`` as delivered (before resolving symlinks)."""
        return feed.path_for(self.folder, logical_date)

    def locate(self, feed: Feed, logical_date: date) -> Path | None:
        """The real path of the file of ``feed`` for ``logical_date``; None when there is none.

        Raises :class:`LandingFileRefused` when it resolves outside the landing folder and the
        ``link_roots``, or is not a regular file (a folder, a FIFO, a device).
        """
        path = self.path_for(feed, logical_date)
        if not path.is_symlink() and not path.exists():
            return None
        real = path.resolve()
        if not any(real.is_relative_to(root) for root in self.trusted_folders):
            roots = ", ".join(map(str, self.trusted_folders))
            raise LandingFileRefused(
                f"{path}: refused, it resolves to {real}, outside the landing folder and the trusted link roots"
                f" ({roots})"
            )
        if not real.exists():
            return None  # a dangling link inside the landing folder: no file
        if not real.is_file():
            raise LandingFileRefused(f"{path}: refused, {real} is not a regular file")
        return real


def read_landing_file(real: Path) -> bytes:
    """The bytes of ``real`` (from :meth:`Landing.locate`), refusing a symlink or special file swapped in since."""
    try:  # non-blocking: a FIFO swapped in must not hang the open (no effect on regular files)
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise LandingFileRefused(f"{real}: refused, replaced by a symlink") from exc
        raise
    with open(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise LandingFileRefused(f"{real}: refused, not a regular file")
        return fh.read()
