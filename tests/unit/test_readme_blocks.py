"""The README block reader behind tests/integration/test_readme.py: markers, sections, and errors."""

from __future__ import annotations

import pytest
from readme_blocks import README, ReadmeMarkerError, readme_blocks

SAMPLE = """# Title

## Run it

```bash
./recomart demo
```

<!-- readme-test: skip (the test command itself) -->
```bash
./recomart test
```

```python
print("not a command block")
```

### Serve

<!-- readme-test: background 8000 -->

```bash
./recomart serve
```

```sql
select 1;
```
"""


def test_blocks_carry_their_section_marker_and_text() -> None:
    blocks = readme_blocks(SAMPLE)
    assert [(b.section, b.language, b.marker, b.argument) for b in blocks] == [
        ("Run it", "bash", None, ""),
        ("Run it", "bash", "skip", "the test command itself"),
        ("Serve", "bash", "background", "8000"),
        ("Serve", "sql", None, ""),
    ]
    assert blocks[0].text == "./recomart demo\n" and blocks[0].line == 5
    assert blocks[2].port == 8000


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ("<!-- readme-test: skip -->", "needs a reason"),
        ("<!-- readme-test: background -->", "needs the port"),
        ("<!-- readme-test: background soon -->", "needs the port"),
        ("<!-- readme-test: hide (why) -->", "cannot read the marker"),
    ],
)
def test_a_malformed_marker_names_its_line(marker: str, message: str) -> None:
    with pytest.raises(ReadmeMarkerError, match=rf"README.md:3: .*{message}"):
        readme_blocks(f"# T\n\n{marker}\n```bash\necho\n```\n")


def test_prose_that_quotes_a_marker_is_not_one() -> None:
    text = "# T\n\nPut `<!-- readme-test: skip (reason) -->` before such a block.\n\n```bash\necho\n```\n"
    assert [b.marker for b in readme_blocks(text)] == [None]


def test_a_marker_away_from_any_block_is_refused() -> None:
    with pytest.raises(ReadmeMarkerError, match="right before a block"):
        readme_blocks("<!-- readme-test: skip (why) -->\nsome prose\n```bash\necho\n```\n")


def test_the_readme_skips_only_with_reasons_and_runs_its_quick_start() -> None:
    blocks = readme_blocks(README.read_text())
    assert blocks[0].text.startswith("./recomart demo") and blocks[0].marker is None
    skipped = [b for b in blocks if b.marker == "skip"]
    assert all(b.argument for b in skipped)
    assert len(skipped) <= len(blocks) // 3, [b.name for b in skipped]


def test_a_background_block_without_a_port_says_none() -> None:
    [block] = readme_blocks("# T\n\n<!-- readme-test: background none -->\n```bash\n./recomart stream\n```\n")
    assert block.marker == "background" and block.port is None
