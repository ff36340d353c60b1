"""Merging a run that measured some rows (``--rows``) into the page of the previous run, so that
``docs/performance.md`` always shows every row, each from the newest run that measured it."""

from __future__ import annotations

import re


def sections(page: str) -> tuple[str, dict[int, str]]:
    """A page's head (up to its first numbered section) and its sections by row number."""
    parts = re.split(r"^(?=## \d+\. )", page, flags=re.MULTILINE)
    numbered = {int(re.match(r"## (\d+)\.", part).group(1)): part for part in parts[1:]}
    return parts[0], numbered


def merged(page: str, previous: str | None, measured: set[int]) -> str:
    """``page`` with the sections of the ``previous`` page for the rows this run did not measure
    (``--rows`` runs some), in row order, and a line in its head saying which those are."""
    if not previous:
        return page
    head, new = sections(page)
    _, old = sections(previous)
    kept = sorted(set(old) - measured - set(new))
    if not kept:
        return page
    note = f"- Rows {', '.join(map(str, kept))} are kept from the page's previous run (this one did not measure them)\n"
    rows = {**{number: old[number] for number in kept}, **new}
    return (
        head.rstrip("\n")
        + "\n"
        + note
        + "\n"
        + "".join(rows[number].rstrip("\n") + "\n\n" for number in sorted(rows)).rstrip("\n")
        + "\n"
    )
