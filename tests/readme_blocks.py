"""The fenced command blocks of README.md, with their ``readme-test`` markers (issue 13: every README
command block runs in CI as written).

A block is a fenced ``bash``, ``sh`` or ``sql`` block. The line(s) just before its fence may carry one
marker:

- ``<!-- readme-test: skip (reason) -->``: the block cannot run in a test (the test command itself, a
  command that needs state the README does not build); the harness lists it, with the reason, as skipped;
- ``<!-- readme-test: background PORT -->``: the block starts a server that does not exit; the harness
  starts it, waits until PORT accepts connections, and stops it at the end of the README section;
- ``<!-- readme-test: background none -->``: the same for a process with no port (a worker): the harness
  checks that it is still running after :data:`NO_PORT_WAIT_S` seconds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
LANGUAGES = ("bash", "sh", "sql")
NO_PORT_WAIT_S = 5.0
_MARKER = re.compile(r"^<!--\s*readme-test:\s*(?P<kind>skip|background)\b\s*(?P<argument>.*?)\s*-->$")
_FENCE = re.compile(r"^```(?P<language>[\w-]*)\s*$")
_HEADING = re.compile(r"^#{1,6}\s+(?P<title>.+)$")


class ReadmeMarkerError(ValueError):
    """A ``readme-test`` marker that is malformed (no reason, no port) or not followed by a block."""


@dataclass(frozen=True)
class Block:
    """One fenced command block: ``line`` is the 1-based line of its opening fence, ``section`` the
    heading above it, ``marker`` ``None``, ``"skip"`` or ``"background"`` and ``argument`` the skip
    reason or the background port."""

    line: int
    section: str
    language: str
    text: str
    marker: str | None = None
    argument: str = ""

    @property
    def name(self) -> str:
        return f"L{self.line}-{self.language}-{re.sub(r'[^a-z0-9]+', '-', self.section.lower()).strip('-')}"

    @property
    def port(self) -> int | None:
        """The port a background block's server opens (None: ``background none``)."""
        return None if self.argument == "none" else int(self.argument)


def _marker(line: str, number: int) -> tuple[str, str]:
    match = _MARKER.match(line.strip())
    if match is None:
        raise ReadmeMarkerError(f"README.md:{number}: cannot read the marker {line.strip()!r}")
    kind, argument = match["kind"], match["argument"]
    if kind == "skip" and not re.fullmatch(r"\(.+\)", argument):
        raise ReadmeMarkerError(f"README.md:{number}: a skip marker needs a reason in parentheses")
    if kind == "background" and not (argument.isdigit() or argument == "none"):
        raise ReadmeMarkerError(f"README.md:{number}: a background marker needs the port it waits for (or none)")
    return kind, argument.strip("()") if kind == "skip" else argument


def readme_blocks(text: str) -> list[Block]:
    """The command blocks of ``text`` (a README) in order, with their markers."""
    blocks: list[Block] = []
    section, pending, fence = "", None, None
    body: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if fence is not None:
            if line.strip() == "```":
                language, start, marker = fence
                if language in LANGUAGES:
                    kind, argument = marker or (None, "")
                    blocks.append(Block(start, section, language, "\n".join(body) + "\n", kind, argument))
                fence, body = None, []
            else:
                body.append(line)
        elif (opening := _FENCE.match(line)) is not None:
            fence, pending = (opening["language"], number, pending), None
        elif line.lstrip().startswith("<!--") and "readme-test:" in line:
            pending = _marker(line, number)
        elif (heading := _HEADING.match(line)) is not None:
            section = heading["title"]
        elif line.strip() and pending is not None:
            raise ReadmeMarkerError(f"README.md:{number}: a readme-test marker must come right before a block")
    return blocks
