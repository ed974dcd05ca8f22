"""CSV cells that a spreadsheet would run as formulas are written as text, and the file reads
back as the same table through Python's csv module."""

from __future__ import annotations

import csv
import io

import pytest

from facetrace.usecases.audit_labels import action_label
from facetrace.usecases.exports import BOM, csv_text, safe_cell


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ('=HYPERLINK("http://evil.example","x")', '\'=HYPERLINK("http://evil.example","x")'),
        ("+1", "'+1"),
        ("-2", "'-2"),
        ("@SUM(A1:A2)", "'@SUM(A1:A2)"),
        ("\t=1+1", "'\t=1+1"),
        ("\r=1+1", "'\r=1+1"),
        ("Мельник", "Мельник"),
        ("a=b", "a=b"),
        ("", ""),
        (None, ""),
        (True, "yes"),
        (-3, "'-3"),
        (0.5, "0.5"),
    ],
)
def test_safe_cell(value: object, written: str) -> None:
    assert safe_cell(value) == written


def test_csv_text_reads_back_as_the_same_table() -> None:
    rows = [["=1+2", 'say "hi", then\nleave', "+380 44 000"], ["plain", None, "@home"]]
    text = csv_text(["a", "-b", "c"], rows)
    assert text.startswith(BOM) and "\r\n" in text
    read = list(csv.reader(io.StringIO(text.removeprefix(BOM))))
    assert read == [["a", "'-b", "c"], ["'=1+2", 'say "hi", then\nleave', "'+380 44 000"], ["plain", "", "'@home"]]


def test_action_labels_are_plain_words() -> None:
    assert action_label("report.photos_add") == "photos added"
    assert action_label("case.view") == "case viewed"
    assert action_label("retention.sweep_done") == "retention sweep done"  # no label: its own words
