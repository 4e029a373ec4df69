"""Contact rows in COPY's text format: every value escaped, one line per row."""

from projections.contacts.fold import ContactRow
from projections.contacts.store import copy_text


def test_copy_text_escapes_what_would_break_a_row() -> None:
    row = ContactRow("c", "2026-01-01T00:00:00.000000Z", "e", "call", "phone", "crm\tdesk",
                     "Inbound call about a\\b\nline two\r", 3, 42)
    assert copy_text([row, row]) == (
        "c\t2026-01-01T00:00:00.000000Z\te\tcall\tphone\tcrm\\tdesk\t"
        "Inbound call about a\\\\b\\nline two\\r\t3\t42\n") * 2


def test_no_rows_no_text() -> None:
    assert copy_text([]) == ""
