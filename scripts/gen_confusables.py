"""Writes ess_sidecar/domain/confusables.json, the Unicode data `ids.disguised` reads: each
character's script (Scripts.txt) and what it looks like (confusables.txt, UTS 39), taken
from the pinned confusable-homoglyphs package so that the domain reads them with the
standard library alone. `make confusables` runs it; tests/unit/test_confusables_data.py
fails when the committed file is not what it writes.
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import version
from pathlib import Path

from confusable_homoglyphs import categories, confusables

TARGET = Path(__file__).resolve().parents[1] / "ess_sidecar" / "domain" / "confusables.json"
BIDI_MARK = "\u200e"  # around some right-to-left glyphs in the package's data


def _ranges() -> list[list[object]]:
    """[first, last, script] of every range of code points, neighbours of one script
    merged."""
    data = categories.categories_data
    names = data["iso_15924_aliases"]
    merged: list[list[object]] = []
    for first, last, name, _category in data["code_points_ranges"]:
        script = names[name]
        if merged and merged[-1][2] == script and merged[-1][1] == first - 1:
            merged[-1][1] = last
        else:
            merged.append([first, last, script])
    return merged


def _script(character: str, ranges: list[list[object]]) -> str:
    code = ord(character)
    for first, last, script in ranges:
        if first <= code <= last:  # type: ignore[operator]
            return str(script)
    return "UNKNOWN"


def build() -> str:
    """The file's text."""
    ranges = _ranges()
    ascii_look: dict[str, str] = {}
    script_look: dict[str, list[str]] = {}
    for character, glyphs in sorted(confusables.confusables_data.items()):
        if len(character) != 1:
            continue
        looks: set[str] = set()
        for glyph in glyphs:
            other = glyph["c"].replace(BIDI_MARK, "")
            if len(other) != 1 or other == character:
                continue
            if other.isascii() and other.isprintable() and not character.isascii():
                ascii_look.setdefault(character, other)
            looks.add(_script(other, ranges))
        looks -= {"COMMON", "INHERITED", "UNKNOWN"}
        if looks:
            script_look[character] = sorted(looks)
    data = {"source": f"confusable-homoglyphs {version('confusable-homoglyphs')}"
                      " (Unicode's confusables.txt and Scripts.txt)",
            "scripts": ranges, "ascii_look": ascii_look, "script_look": script_look}
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n"


def main() -> int:
    TARGET.write_text(build(), encoding="utf-8")
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
