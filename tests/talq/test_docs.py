"""docs/talq.md's mapping table is the code's (`talq.mapping`), row for row."""

from __future__ import annotations

from pathlib import Path

from cityedge.gateway.talq import mapping

DOC = Path(__file__).resolve().parents[2] / "docs" / "talq.md"


def test_the_mapping_table_matches_the_code() -> None:
    rows = set()
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[1].startswith("`"):
            rows.add((cells[0], cells[1].strip("`"), cells[3], cells[4].split("`")[1]
                      if cells[4].startswith("`") else None))  # fmt: skip
    expected = {
        (fn.type, a.name, a.scope, a.point)
        for fn in (*mapping.GATEWAY_FUNCTIONS[1:], *mapping.DEVICE_FUNCTIONS)
        for a in fn.attributes
    }
    assert rows == expected, (sorted(expected - rows), sorted(rows - expected))


def test_the_docs_name_the_standard_without_claiming_certification() -> None:
    text = DOC.read_text()
    assert "TALQ Smart City Protocol" in text
    assert "not** certified" in text
