"""What a string in an event may hold: only what every store downstream can keep.

PostgreSQL refuses NUL in text and jsonb, and the read models pack lists with the unit separator,
so no string carries a C0 control character (U+0000-U+001F). Prose written by people (complaint
and feedback text, call topic, e-mail subject) keeps tab, line feed and carriage return. The
checks are pydantic-core patterns, run in Rust before any Python validator; the same patterns are
published in the JSON Schemas, and `control_reason` names the character a refused string holds.
"""

import re
from typing import Any

from pydantic import Field

CONTROLS = r"\x00-\x1f"
PROSE_CONTROLS = r"\x00-\x08\x0b\x0c\x0e-\x1f"  # all but tab, line feed, carriage return
# Unicode White_Space beyond the controls: what str_strip_whitespace trims, with \t\n\v\f\r
SPACES = r"\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
WHITESPACE = "\t\n\x0b\x0c\r\x20\x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + (
    "\u2028\u2029\u202f\u205f\u3000"
)

LINE = rf"^[^{CONTROLS}]*$"
PROSE = rf"^[^{PROSE_CONTROLS}]*$"


def non_blank(pattern: str) -> str:
    """`pattern` (LINE or PROSE) and at least one character that is not whitespace: what a
    minimum length of 1 means once surrounding whitespace is trimmed, for the JSON Schema."""
    allowed = pattern.removeprefix("^").removesuffix("*$")
    return rf"^{allowed}*[^{CONTROLS}{SPACES}]{allowed}*$"


def text_field(max_length: int, *, min_length: int = 0, prose: bool = False, default: Any = ...) -> Any:
    """A field of trimmed text without control characters (prose: tab and line breaks allowed).
    Lengths count the trimmed text."""
    pattern = PROSE if prose else LINE
    return Field(
        default,
        min_length=min_length or None,
        max_length=max_length,
        pattern=pattern,
        json_schema_extra={"pattern": non_blank(pattern)} if min_length else None,
    )


_FOUND = {
    LINE: (re.compile(f"[{CONTROLS}]"), "must not contain control characters"),
    PROSE: (
        re.compile(f"[{PROSE_CONTROLS}]"),
        "must not contain control characters other than tab, line feed and carriage return",
    ),
}
_UNSTORABLE = re.compile(f"[{CONTROLS}\ud800-\udfff]")


def control_reason(value: Any, pattern: str) -> str | None:
    """Why `value` does not match `pattern`, when the reason is a control character; else None.
    Prose patterns allow what PROSE allows; every other pattern allows no control character."""
    if not isinstance(value, str):
        return None
    forbidden, reason = _FOUND.get(pattern, _FOUND[LINE])
    found = forbidden.search(value.strip(WHITESPACE))  # trimmed first, as the models do
    return f"{reason} (found U+{ord(found.group()):04X})" if found else None


def printable(value: object) -> str:
    """``value`` as text with control characters and lone surrogates written as ``\\uXXXX``
    escapes: a reason may quote the very input that was refused, and the reason itself goes to
    PostgreSQL (a dead letter) and into JSON answers."""
    text = str(value)
    return _UNSTORABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text) if _UNSTORABLE.search(text) else text


def check_line(value: str) -> str:
    """For strings that pydantic-core does not see as strings (attribute values): raise
    ValueError on a control character or a lone surrogate."""
    found = _UNSTORABLE.search(value)
    if found is None:
        return value
    char = ord(found.group())
    if char < 0x20:
        raise ValueError(f"must not contain control characters (found U+{char:04X})")
    raise ValueError(f"must be valid Unicode (found a lone surrogate U+{char:04X})")
