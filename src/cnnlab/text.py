"""Words for counts in what cnnlab prints: ``1 epoch``, ``2 epochs``, ``10,000 images``."""

from __future__ import annotations


def plural(count: int, noun: str, plural_form: str | None = None) -> str:
    """``count`` with thousands separators and ``noun``, in the plural unless the count is 1."""
    word = noun if count == 1 else (plural_form or f"{noun}s")
    return f"{count:,} {word}"
