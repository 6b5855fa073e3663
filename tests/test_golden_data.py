"""The in-repo golden data (tests/data/golden) is what scripts/make_test_data.py built: every file listed in
PROVENANCE.md with its sha256, nothing else; darknet's reference files the tests read are the ones recorded."""
from __future__ import annotations

import re

from conftest import GOLDEN, REFERENCE, need_reference, sha256

ROW = re.compile(r"^\| `([^`]+)` \| ([0-9a-f]{64}) \| (.*) \|$")


def _table(heading: str) -> dict[str, str]:
    text = (GOLDEN / "PROVENANCE.md").read_text()
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    return {m[1]: m[2] for line in section.splitlines() if (m := ROW.match(line))}


def test_every_file_matches_provenance():
    listed = _table("## Files")
    assert len(listed) >= 20
    present = {p.relative_to(GOLDEN).as_posix() for p in GOLDEN.rglob("*") if p.is_file()} - {"PROVENANCE.md"}
    assert present == set(listed), "tests/data/golden differs from PROVENANCE.md: run scripts/make_test_data.py"
    stale = [p for p, digest in listed.items() if sha256(GOLDEN / p) != digest]
    assert not stale, f"changed since scripts/make_test_data.py built them: {stale}"


@need_reference
def test_reference_files_are_the_recorded_ones():
    listed = _table("## darknet's files the tests read")
    assert "cfg/tiny.cfg" in listed and "data/imagenet.labels.list" in listed
    differ = [p for p, digest in listed.items() if sha256(REFERENCE / p) != digest]
    assert not differ, f"{REFERENCE}: not the darknet files the goldens were made from: {differ}"
