"""SQL helpers shared by the stores.

Large lists travel as one text parameter that PostgreSQL splits: psycopg's adaptation of a Python
list of thousands of strings to a uuid[] or text[] parameter costs more on the client than the
query (BENCHMARKS.md). Values never hold the separator: the doors refuse control characters, and
a record that slips through fails alone (the runtime isolates it).
"""

SEPARATOR = "\x1f"
UNPACK = "unnest(string_to_array(%s, chr(31)))"


def pack(values: list[str]) -> str:
    if any(SEPARATOR in v for v in values):
        raise ValueError("values must not contain the unit separator")
    return SEPARATOR.join(values)


def copy_field(value: str) -> str:
    """A value in COPY's text format (most values need no escaping: checking first is faster)."""
    if "\\" not in value and "\t" not in value and "\n" not in value and "\r" not in value:
        return value
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def array_literal(values: list[str]) -> str:
    """A text[] literal: every element quoted, so no value can be read as NULL or split."""
    return "{" + ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "}"
