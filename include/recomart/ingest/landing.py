"""Where the landing files are, and which of them the loader may read.

A landing folder is often writable by whoever delivers the files.  A symlink placed there could make
the loader read any file it can read (secrets, ``/dev/zero``) into the warehouse, so a file is read
only when its real path (every symlink resolved) lies in the landing folder or in a folder the
operator trusts (``link_roots``: the UCI landing links into the configured UCI source folder), or when
its chain of links passes through such a folder (the links inside it are the operator's).  Anything
else is refused: a failure of its date, recorded in the ledger and raised, never read, and not a
missing file either (that would hide the delivery).
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from datetime import date
from functools import cached_property
from pathlib import Path

from recomart.errors import BadInputError
from recomart.ingest.feeds import Feed

MAX_LINKS = 40  # links followed in a chain (Linux's own limit)


class LandingFileRefused(BadInputError, ValueError):
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
        if not (self._trusted(real) or self._links_through_a_link_root(path)):
            raise LandingFileRefused(
                f"{path}: refused, it resolves to {real}, outside the landing folder and the trusted link roots"
                f" ({', '.join(map(str, self.trusted_folders))})"
            )
        if not real.exists():
            return None  # a dangling link inside the landing folder: no file
        if not real.is_file():
            raise LandingFileRefused(f"{path}: refused, {real} is not a regular file")
        return real

    def _trusted(self, real: Path) -> bool:
        return any(real.is_relative_to(folder) for folder in self.trusted_folders)

    def _links_through_a_link_root(self, path: Path) -> bool:
        """Whether following ``path`` one link at a time reaches a file in one of the ``link_roots``."""
        roots = self.trusted_folders[1:]
        for _ in range(MAX_LINKS):
            if not path.is_symlink():
                return False
            path = path.parent / path.readlink()  # a relative target is relative to the link's folder
            if any(path.parent.resolve().is_relative_to(root) for root in roots):
                return True
        return False


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
