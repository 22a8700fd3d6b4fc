"""Canonical ids: one spelling per id, so that ids which look alike cannot escape a halt.

An id (account, strategy, symbol, scope id, executor id, client order id, fill id) is
accepted only if it is already canonical; anything else is INVALID_ARGUMENT naming the
field, never silently rewritten (an executor must not believe it sent "momo" when the
sidecar saw something else). Canonical means:

- 1 to 128 characters, in NFC;
- no leading or trailing whitespace, and no whitespace but the ASCII space inside, never
  two in a row ("alpha  beta" and "alpha beta" look alike wherever runs of spaces
  collapse: HTML, many alert and dashboard renderers);
- no control, format, surrogate, private-use or unassigned code point;
- no default-ignorable code point (U+034F, the variation selectors, the Hangul fillers
  U+115F, U+1160, U+3164, U+FFA0, ...), which render as nothing, nor the braille blank
  U+2800, which renders as a space but is neither whitespace nor ignorable;
- no combining mark first;
- no compatibility character (NFKC: fullwidth "ＡＡＰＬ", ligatures, superscripts), which
  looks like the plain one it stands for;
- no disguise (stop 61), by Unicode's confusables (UTS 39) and scripts, as
  confusables.json beside this file holds them (`make confusables` writes it), judged
  word by word (a run of letters and their marks; digits, punctuation and signs part
  words), so that what is beside a disguise does not hide it:
  - no sign that looks like an ASCII one: "BTC‐USD" with a Unicode hyphen;
  - no word that reads as ASCII but has a letter of another kind that looks like an
    ASCII one: "mоmo" with a Cyrillic "о", "АAPL", "ΚΟ1" in Greek capitals, "ɑlpha",
    the "hеdge" of "δ-hеdge";
  - no word that mixes scripts where a letter looks like one of the other's: "cчёт" (a
    Latin "c" in Cyrillic).

  Scripts still mix where nothing is disguised: "δ-hedge", "θ-carry", "счёт-USD",
  "東京ロング" (Han, kana, Hangul and Bopomofo count as one, as UTS 39 lets them), "BTC-€".
  Canonical ids may still look alike ("Δ-hedge" and "∆-hedge"): a stop covers every id
  that looks like its own (`looks`; GuardEngine._blocking). essctl still spells out every
  non-ASCII character of a scope it acts on.

Versions before stop 60 took two spaces in a row, and before stop 61 disguised ids: the
journal's ids are taken as they were when it is replayed (`journaled`), or a start would
fail for good on a record that was valid when written. A new request never names them
again.

Case: symbols are case-insensitive and folded to upper case ("aapl" is SYMBOL:AAPL, and
the answer says AAPL); every other kind of id is case-sensitive ("Momo" is not "momo").
"""

from __future__ import annotations

import bisect
import importlib.resources
import itertools
import json
import unicodedata
from typing import Final

from .errors import InvalidArgument

MAX_ID_LENGTH: Final = 128

# Default_Ignorable_Code_Point (Unicode DerivedCoreProperties.txt) that `str.isprintable`
# lets through: marks and letters that render as nothing. The rest of the property is in
# categories Cf/Cn, which isprintable already refuses.
_INVISIBLE = frozenset(
    [0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x3164, 0xFFA0]
    + list(range(0x180B, 0x1810))  # Mongolian free variation selectors and vowel separator
    + list(range(0xFE00, 0xFE10))  # variation selectors 1-16
    + list(range(0xE0100, 0xE01F0))  # variation selectors 17-256
    + [0x2800])  # the braille blank (review 29): a symbol (So), yet renders as a space


def blank(value: str) -> bool:
    """Whether `value` shows nothing: whitespace and invisible characters alone."""
    return all(c.isspace() or ord(c) in _INVISIBLE for c in value)


def shown(value: str) -> str:
    """`value` as an error message names it: each character that shows nothing (but the
    ASCII space) or is not printable written as its escape, `\\u115f` (review 53a: a key
    holding an invisible character, printed as it was, showed nothing to delete)."""
    return "".join(c if c == " " or (c.isprintable() and not c.isspace()
                                     and ord(c) not in _INVISIBLE)
                   else f"\\u{ord(c):04x}" if ord(c) <= 0xFFFF else f"\\U{ord(c):08x}"
                   for c in value)


def canonical_id(value: str, field: str, journaled: bool = False) -> str:
    """`value` if it is a canonical id; InvalidArgument naming `field` otherwise.
    `journaled`: read from the journal, where two spaces in a row may be (see above)."""
    # The hot path: printable ASCII is NFC, has no default-ignorable code point and no
    # combining mark, so only its length, its ends and its runs of spaces need a look.
    if value.isascii() and value.isprintable() and 0 < len(value) <= MAX_ID_LENGTH \
            and value[0] != " " and value[-1] != " " and "  " not in value:
        return value
    if not value:
        raise InvalidArgument(field, "is required")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidArgument(field, f"is longer than {MAX_ID_LENGTH} characters")
    if value != value.strip():
        raise InvalidArgument(field, "has leading or trailing whitespace")
    if "  " in value and not journaled:  # review 55a
        raise InvalidArgument(field, "has two spaces in a row: ids that look alike are"
                              " refused (one space, as in \"alpha beta\")")
    if not value.isprintable():
        raise InvalidArgument(field, "has a control, format, separator or unassigned"
                              " character")
    if any(ord(c) in _INVISIBLE for c in value):
        raise InvalidArgument(field, "has an invisible (default-ignorable) character")
    if unicodedata.category(value[0]).startswith("M"):
        raise InvalidArgument(field, "starts with a combining mark")
    if not unicodedata.is_normalized("NFC", value):
        raise InvalidArgument(field, "is not in Unicode NFC form")
    if not unicodedata.is_normalized("NFKC", value):
        raise InvalidArgument(field, "has a compatibility character (fullwidth, ligature,"
                              " superscript, ...): use the plain one")
    if not journaled and (disguise := disguised(value)):  # stop 61
        raise InvalidArgument(field, f"{disguise}: ids that look alike are refused")
    return value


def _load_confusables() -> tuple[list[int], list[tuple[int, str]], dict[int, str],
                                 dict[str, str], dict[str, frozenset[str]]]:
    """confusables.json (scripts/gen_confusables.py writes it from Unicode's data): the
    starts of the ranges of code points and (last, script) of each, each character's
    prototype (UTS 39: the character, or characters, it stands for in a skeleton), the
    ASCII character each non-ASCII one looks like, and the scripts of the characters each
    looks like. Han, kana, Hangul and Bopomofo are one script here, as UTS 39 lets
    Japanese, Korean and Chinese ids mix them."""
    # Found by its package, not by __file__: mypyc gives a compiled module a __file__
    # relative to the directory it was built from
    package = importlib.resources.files(__name__.rpartition(".")[0])
    data = json.loads(package.joinpath("confusables.json").read_text("utf-8"))
    starts = [first for first, _last, _script in data["scripts"]]
    ranges = [(last, _ONE_SCRIPT.get(script, script))
              for _first, last, script in data["scripts"]]
    prototypes = {ord(c): target for c, target in data["prototypes"].items()}
    script_look = {c: frozenset(_ONE_SCRIPT.get(s, s) for s in scripts)
                   for c, scripts in data["script_look"].items()}
    return starts, ranges, prototypes, dict(data["ascii_look"]), script_look


_ONE_SCRIPT: Final = {"HIRAGANA": "HAN", "KATAKANA": "HAN", "HANGUL": "HAN", "BOPOMOFO": "HAN"}
_NEUTRAL: Final = frozenset(["COMMON", "INHERITED"])  # digits, punctuation, signs, marks
_NONE: Final = frozenset[str]()
_SCRIPT_STARTS, _SCRIPT_RANGES, _PROTOTYPES, _ASCII_LOOK, _SCRIPT_LOOK = _load_confusables()


def _script(character: str) -> str:
    """The script of `character`: LATIN, CYRILLIC, HAN, COMMON, ..., or UNKNOWN."""
    at = bisect.bisect_right(_SCRIPT_STARTS, ord(character)) - 1
    if at < 0 or ord(character) > _SCRIPT_RANGES[at][0]:
        return "UNKNOWN"
    return _SCRIPT_RANGES[at][1]


def skeleton(value: str) -> str:
    """UTS 39's skeleton: two ids that look alike have the same one ("Δ-hedge" and
    "∆-hedge", "へッジ" and "ヘッジ", "algo1" and "algol")."""
    return unicodedata.normalize("NFD", unicodedata.normalize("NFD", value)
                                 .translate(_PROTOTYPES))


def looks(value: str, symbol: bool = False) -> list[str]:
    """What an id looks like: its skeleton; a symbol's also in lower case unless it is
    ASCII (review 61b: "ẟ" has no capital, so a halt of "ẟ-HEDGE" missed "Δ-HEDGE", which
    a small "δ" folds to; ASCII's lower case would make COM look like CORN). Two ids of a
    kind that share one look alike, and a stop of either covers both
    (GuardEngine._blocking)."""
    if symbol and not value.isascii():
        return list(dict.fromkeys((skeleton(value), skeleton(value.lower()))))
    return [skeleton(value)]


def disguised(value: str) -> str:
    """Why `value` reads as an id written otherwise (see the module docstring), or "" if
    it does not. Each character is judged by its base (NFD's first part: the "е" of a
    Cyrillic "ё"), and each word (a run of letters and their marks) on its own, so that
    a sign or a letter of another script elsewhere in the id changes nothing."""
    if value.isascii():
        return ""
    bases = [unicodedata.normalize("NFD", c)[0] for c in value]
    scripts = [_script(b) for b in bases]
    ascii_like = [not b.isascii() and b in _ASCII_LOOK for b in bases]
    # A sign (no letter of any script: punctuation, a digit) that looks like an ASCII one
    signs = [c for c, s, like in zip(value, scripts, ascii_like) if like and s == "COMMON"]
    if signs:
        return f"reads as \"{_read(value, bases)}\" but has {_named(signs)}"
    for sign, run in itertools.groupby(range(len(value)), lambda i: scripts[i] == "COMMON"):
        word = list(run)
        if not sign and (why := _disguised_word(value, bases, scripts, ascii_like,
                                                 word[0], word[-1] + 1)):
            return why
    return ""


def _disguised_word(value: str, bases: list[str], scripts: list[str],
                    ascii_like: list[bool], start: int, end: int) -> str:
    """disguised's judgement of the word value[start:end]."""
    word = range(start, end)
    # Reads as ASCII: what it has beyond ASCII and Latin letters all looks like ASCII
    if any(ascii_like[i] for i in word) and all(
            ascii_like[i] or bases[i].isascii() or scripts[i] in ("LATIN", "INHERITED")
            for i in word):
        return (f"reads as \"{_read(value, bases)}\" but has"
                f" {_named([value[i] for i in word if ascii_like[i]])}")
    # Mixes scripts, with letters that look like the other script's
    written = {scripts[i] for i in word} - _NEUTRAL
    if len(written) < 2:
        return ""
    # Those of the script it has fewest of that look like another's it has (the Latin
    # "c" of "cчёт", the Cyrillic "о" of "東京mоmo"), found in one pass over the word
    count: dict[str, int] = {}
    strays: dict[str, list[str]] = {}
    like: dict[str, set[str]] = {}
    for i in word:
        script = scripts[i]
        if script in _NEUTRAL:
            continue
        count[script] = count.get(script, 0) + 1
        others = (_SCRIPT_LOOK.get(bases[i], _NONE) & written) - {script}
        if others:
            strays.setdefault(script, []).append(value[i])
            like.setdefault(script, set()).update(others)
    if not strays:
        return ""
    script = min(strays, key=lambda w: (count[w], w))
    one = len(set(strays[script])) == 1
    looks_like = " or ".join(sorted(w.title() for w in like[script]))
    return (f"mixes {' and '.join(sorted(w.title() for w in written))} letters in"
            f" \"{value[start:end]}\", where {_named(strays[script])}"
            + (f" looks like a {looks_like} letter" if one
               else f" look like {looks_like} letters"))


def _read(value: str, bases: list[str]) -> str:
    """`value` with each character whose base looks like an ASCII one written so."""
    return unicodedata.normalize("NFC", "".join(
        _ASCII_LOOK.get(b, b) + unicodedata.normalize("NFD", c)[1:]
        for b, c in zip(bases, value)))


def _named(characters: list[str]) -> str:
    """Characters as an error names them, each once: "о" (U+043E CYRILLIC SMALL LETTER O)."""
    return ", ".join(dict.fromkeys(f"\"{c}\" (U+{ord(c):04X} {unicodedata.name(c, '?')})"
                                   for c in characters))


def nameable(value: str) -> bool:
    """Whether a request may name `value`, an id the state holds: not one journaled
    before stop 60 with two spaces in a row, or before stop 61 disguised (see above)."""
    try:
        canonical_id(value, "id")
    except InvalidArgument:
        return False
    return True


def fold_symbol(value: str) -> str:
    """A symbol in upper case, in NFC: the one spelling of every case of it. Upper-cased
    decomposed, because a mark's place in the composed form depends on the case it came
    in (review 35: the iota subscript U+0345 of "ᾷ" upper-cases to an Ι before its
    perispomeni, the one of its capital "ᾼ͂" after it, so the two were two symbols and
    an order for the capital escaped a halt of the small). "ß" upper-cases to "SS", but
    its capital "ẞ" (U+1E9E) is upper case already: both fold to "SS", or "STRAẞE"
    escapes a halt of STRASSE."""
    if value.isascii():
        return value.upper()
    upper = unicodedata.normalize("NFD", value).upper().replace("\u1e9e", "SS")
    return unicodedata.normalize("NFC", upper)


def canonical_symbol(value: str, field: str, journaled: bool = False) -> str:
    """A canonical id folded to upper case: symbols are case-insensitive."""
    canonical_id(value, field, journaled)
    if value.isascii():
        return value.upper()
    folded = fold_symbol(value)
    if len(folded) > MAX_ID_LENGTH:  # "ß" upper-cases to "SS": the input was short enough
        raise InvalidArgument(field, f"is longer than {MAX_ID_LENGTH} characters once upper"
                              f" case ({len(folded)}): symbols are case-insensitive")
    return canonical_id(folded, field, journaled) if folded != value else value


def likeness(value: str) -> str:
    """What ids that an operator may take for one another share: letter case folded (as
    `fold_symbol` does) and runs of spaces as one. Only for saying which known id a stop
    may have been meant for (GuardEngine.spelled_alike); ids stay exact everywhere else."""
    return " ".join(fold_symbol(value).split())
