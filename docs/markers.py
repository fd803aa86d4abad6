"""A generated block of a docs page, between two HTML comments: print it, write it into the page, or check the copy.

The pages' tables come from commands (settings, measured figures), never typed by hand; a test runs the check.
"""

from __future__ import annotations

import sys
from pathlib import Path


def between(text: str, begin: str, end: str) -> str:
    """What `text` holds between the markers, stripped; empty when either is missing."""
    return text.split(begin, 1)[-1].split(end, 1)[0].strip() if begin in text and end in text else ""


def print_write_or_check(current: str, begin: str, end: str, write: Path | None, check: Path | None, fix: str) -> int:
    """Print `current`, or replace the page's block with it (`write`), or compare the page's copy (`check`); the exit
    status. `fix` is the command that brings a stale copy up to date."""
    page = check or write
    if page is None:
        print(current)
        return 0
    text = page.read_text()
    if begin not in text or end not in text:
        print(f"{page}: no {begin} ... {end} markers", file=sys.stderr)
        return 1
    if write is not None:
        head, rest = text.split(begin, 1)
        page.write_text(f"{head}{begin}\n{current}\n{end}{rest.split(end, 1)[1]}")
        return 0
    if between(text, begin, end) != current:
        print(f"{page}: the table between {begin} and {end} is stale; run {fix} --write {page}", file=sys.stderr)
        return 1
    return 0
