"""Redact personal identifiers from a chat message before anything is stored.

Pure and fast (it runs on every chat message): a few precompiled regexes, applied
in a fixed order because the shapes overlap:

1. e-mail addresses                                       -> ``[email]``
2. IBANs (mod-97 valid, or upper-case with 8+ digits)     -> ``[account]``
3. payment cards: 13-19 digits, Luhn-valid                -> ``[card]``
4. digits after "account", "acct", "routing", "sort code" -> ``[account]``
5. phone numbers: +country code, (area) code, or grouped  -> ``[phone]``
6. any other run of 8+ digits, possibly grouped           -> ``[account]``

A card is tried before a phone (16 grouped digits are a card, not a phone). A
16-digit run that fails the Luhn check is not a card but is still an account-length
run, so step 6 redacts it as ``[account]``.

Left alone: prices (``$1,200``, ``12 000 000 euros``), dates (``2025-01-31``,
``31/01/2025``, ``31.01.2025``), times (``10:30``), years and year ranges
(``2019-2020``), short order numbers (under 7 digits), model names (``ps5``,
``iphone 15``) and ISBN-13s (``978-0-306-40615-7``).
"""

from __future__ import annotations

import re

EMAIL = "[email]"
PHONE = "[phone]"
CARD = "[card]"
ACCOUNT = "[account]"
PLACEHOLDERS: tuple[str, ...] = (EMAIL, PHONE, CARD, ACCOUNT)

# Starts only at a token start (the look-behind), so a long word is scanned once.
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+")

# Two capital letters, two check digits, then the body: compact, or printed in
# groups of four (the last group shorter). Upper case only: in lower case, prose
# such as "ab12 this is a test" would look like a grouped body.
_IBAN = re.compile(
    r"\b[A-Z]{2}[0-9]{2}(?:[A-Z0-9]{11,30}|(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,3})?)\b"
)

# 13-19 digits, optionally separated by single spaces or dashes.
_CARD = re.compile(r"(?<![\w+.,/:-])[0-9](?:[ -]?[0-9]){12,18}(?![\w/:-]|[.,][0-9])")

# Digits right after an account keyword ("account number is 12345678",
# "sort code 12-34-56"): redacted even when short.
_KEYWORD_ACCOUNT = re.compile(
    r"(?P<keyword>\b(?:bank\s+)?(?:account|acct|a/c|routing|sort\s*code|bsb)"
    r"(?:\s+(?:number|no\.?|num|nr|#))?(?:\s+ending\s+in)?(?:\s+is)?\s*[:#=]?\s*)"
    r"(?P<number>[0-9](?:[ -]?[0-9]){3,33})(?![\w])",
    re.IGNORECASE,
)

# Phone shapes: international (+CC ...), an (area) code, a national number with a
# leading 0, or 2+ groups sharing one separator ("555-123-4567", "06 12 34 56 78").
_PHONE = re.compile(
    r"(?<![\w+/.,:-])"
    r"(?:\+[0-9]{1,3}(?:[ .-]?\(?[0-9]{1,4}\)?)(?:[ .-]?[0-9]{2,5}){1,5}"
    r"|\(0?[0-9]{1,4}\)[ .-]?[0-9]{2,5}(?:[ .-]?[0-9]{2,5}){0,3}"
    r"|0[0-9]{9,10}"
    r"|[0-9]{1,5}(?P<sep>[ .-])[0-9]{2,5}(?:(?P=sep)[0-9]{2,5}){0,4})"
    r"(?![\w/:-]|[.,][0-9])"
)

# Any digit run, grouped by one kind of separator (space or dash).
_DIGIT_RUN = re.compile(
    r"(?<![\w+.,/:-])[0-9]+(?:(?P<sep>[ -])[0-9]+(?:(?P=sep)[0-9]+)*)?(?![\w/:-]|[.,][0-9])"
)

_DATE = re.compile(
    r"[0-9]{4}[-./][0-9]{1,2}[-./][0-9]{1,2}|[0-9]{1,2}[-./][0-9]{1,2}[-./](?:[0-9]{4}|[0-9]{2})"
)
_YEARS = re.compile(r"(?:19|20)[0-9]{2}(?:[ -](?:19|20)[0-9]{2})+")
_PRICE_AFTER = re.compile(
    r"\s?(?:[€$£¥%]|k\b|eur\b|euros?\b|usd\b|dollars?\b|bucks\b|gbp\b|pounds?\b|quid\b)",
    re.IGNORECASE,
)
_ANY_DIGIT_OR_AT = re.compile(r"[0-9@]")
_NOT_DIGIT = re.compile(r"[^0-9]")


def redact(text: str) -> str:
    """Return ``text`` with e-mails, phones, cards and account numbers replaced."""
    if not _ANY_DIGIT_OR_AT.search(text):  # the common case: nothing to look at
        return text
    if "@" in text:
        text = _EMAIL.sub(EMAIL, text)
    text = _IBAN.sub(_iban, text)
    text = _CARD.sub(_card, text)
    text = _KEYWORD_ACCOUNT.sub(_keyword_account, text)
    text = _PHONE.sub(_phone, text)
    return _DIGIT_RUN.sub(_long_run, text)


def _digits(s: str) -> str:
    return _NOT_DIGIT.sub("", s)


def _iban(m: re.Match[str]) -> str:
    # A valid checksum is proof; an upper-case look-alike with 8+ digits is a
    # mistyped IBAN, still worth hiding.
    compact = m.group().replace(" ", "")
    if _iban_checksum_ok(compact) or len(_digits(compact[4:])) >= 8:
        return ACCOUNT
    return m.group()


def _iban_checksum_ok(iban: str) -> bool:
    """ISO 13616: move the first four characters to the end, letters to 10..35, mod 97 == 1."""
    rearranged = iban[4:] + iban[:4]
    number = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(number) % 97 == 1


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _isbn13_ok(digits: str) -> bool:
    if len(digits) != 13 or not digits.startswith(("978", "979")):
        return False
    total = sum(int(ch) * (3 if i % 2 else 1) for i, ch in enumerate(digits))
    return total % 10 == 0


def _card(m: re.Match[str]) -> str:
    digits = _digits(m.group())
    if _isbn13_ok(digits) or not _luhn_ok(digits):
        return m.group()  # not a card; step 6 still hides it when it is long
    return CARD


def _keyword_account(m: re.Match[str]) -> str:
    return m.group("keyword") + ACCOUNT


def _not_an_identifier(m: re.Match[str]) -> bool:
    """Dates, years, prices and ISBNs look like digit runs but identify nobody."""
    s = m.group()
    if _DATE.fullmatch(s) or _YEARS.fullmatch(s) or _isbn13_ok(_digits(s)):
        return True
    after_currency = m.start() > 0 and m.string[m.start() - 1] in "$€£¥"
    return after_currency or _PRICE_AFTER.match(m.string, m.end()) is not None


def _phone(m: re.Match[str]) -> str:
    s = m.group()
    n = len(_digits(s))
    if not 7 <= n <= 15 or _not_an_identifier(m):
        return s
    # Grouped digits with no +, ( or leading 0 are a phone only when short enough
    # to be one; 12+ of them read as an account number (step 6).
    if s[0] not in "+(0" and n > 11:
        return s
    return PHONE


def _long_run(m: re.Match[str]) -> str:
    s = m.group()
    if len(_digits(s)) < 8 or _not_an_identifier(m):
        return s
    return ACCOUNT
