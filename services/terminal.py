"""Text for an operator's terminal, from whatever a channel or a database row holds."""

from __future__ import annotations


def printable(text: object) -> str:
    """``text`` with what is not printable (controls, bidirectional overrides, lone surrogates)
    written as ``\\u`` escapes, so that a value cannot move the cursor, recolour or reorder the
    lines around it."""
    return "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in str(text))
