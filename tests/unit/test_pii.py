"""PII redaction: identifiers are replaced before anything is stored; prices and dates stay."""

from __future__ import annotations

import pytest

from rapport.profile.domain.pii import ACCOUNT, CARD, EMAIL, PHONE, PLACEHOLDERS, redact

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # e-mail addresses
        ("mail me at john.doe+books@example.co.uk please", "mail me at [email] please"),
        ("JANE@EXAMPLE.COM", "[email]"),
        # phone numbers: +country code, (area) code, groups, national 0-prefixed
        ("call me on +44 20 7946 0958", "call me on [phone]"),
        ("+1 (555) 123-4567", "[phone]"),
        ("+4915112345678", "[phone]"),
        ("my number is 555-123-4567", "my number is [phone]"),
        ("555.123.4567", "[phone]"),
        ("06 12 34 56 78", "[phone]"),
        ("(030) 1234567", "[phone]"),
        ("07911123456", "[phone]"),
        ("555-1234", "[phone]"),
        # payment cards: Luhn-valid 13-19 digits, grouped or not
        ("my card is 4111 1111 1111 1111 exp 12/26", "my card is [card] exp 12/26"),
        ("4111-1111-1111-1111", "[card]"),
        ("5500005555555559", "[card]"),
        ("amex 3782 822463 10005", "amex [card]"),
        # IBANs: checksum-valid, compact or grouped; an upper-case look-alike with 8+ digits
        ("IBAN DE89 3704 0044 0532 0130 00 thanks", "IBAN [account] thanks"),
        ("GB82WEST12345698765432", "[account]"),
        ("NL91ABNA0417164300", "[account]"),
        ("DE89 3704 0044 0532 0130 01", "[account]"),
        # account numbers: after a keyword (even short), or any run of 8+ digits
        ("account number is 12345678", "account number is [account]"),
        ("acct 1234", "acct [account]"),
        ("my sort code is 12-34-56", "my sort code is [account]"),
        ("routing number 021000021", "routing number [account]"),
        ("Account No. 55443322", "Account No. [account]"),
        ("12345678", "[account]"),
        ("reference 1234 5678 9012", "reference [account]"),
    ],
)
def test_identifiers_are_redacted(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_a_luhn_invalid_card_length_run_is_an_account_number_not_a_card() -> None:
    # 16 digits that fail the Luhn check are no card, but still an 8+ digit run.
    assert redact("4111 1111 1111 1112") == ACCOUNT
    assert redact("4111111111111112") == ACCOUNT
    assert redact("4111 1111 1111 1111") == CARD


def test_a_card_is_not_taken_for_a_phone_number() -> None:
    assert redact("4111 1111 1111 1111") == CARD  # 16 grouped digits would fit a phone's shape


@pytest.mark.parametrize(
    "text",
    [
        # prices
        "under 50 euros",
        "$1,200 max",
        "1.200,50 €",
        "it was 1299.99",
        "12 000 000 euros",
        "50% off",
        # dates, times, years
        "on 2025-01-31 at 10:30",
        "31/01/2025 and 31.01.2025",
        "01-31-2025",
        "from 2019-2020",
        "back in 1999",
        # short order numbers, model names, versions, ISBNs
        "order 123456",
        "order #1234567",
        "iphone 15 and ps5 and rtx 4090",
        "galaxy s23 ultra",
        "version 1.2.3",
        "ISBN 978-0-306-40615-7",
        "9780306406157",
        # prose that looks a little like the shapes above
        "2 kids 3 dogs",
        "ab12 this is a sentence with words",
        "@books_fan on twitter",
        "I have 2 accounts",
    ],
)
def test_prices_dates_models_and_short_numbers_are_kept(text: str) -> None:
    assert redact(text) == text


def test_several_identifiers_in_one_message() -> None:
    text = "I'm Ana, ana@mail.com, +34 612 345 678, card 4111 1111 1111 1111, budget 50 euros"
    assert redact(text) == "I'm Ana, [email], [phone], card [card], budget 50 euros"


def test_placeholders_are_the_four_tokens_and_are_stable_under_redaction() -> None:
    assert PLACEHOLDERS == (EMAIL, PHONE, CARD, ACCOUNT)
    assert set(PLACEHOLDERS) == {"[email]", "[phone]", "[card]", "[account]"}
    text = " ".join(PLACEHOLDERS)
    assert redact(text) == text  # redacting twice changes nothing


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a" * 20_000 + " 1", "a" * 20_000 + " 1"),
        ("a" * 20_000 + "@x.io", EMAIL),
        ("1" * 5_000 + "x", "1" * 5_000 + "x"),  # glued to a letter: a token, not a number
        (" " * 10_000 + "1", " " * 10_000 + "1"),
    ],
)
def test_long_inputs(text: str, expected: str) -> None:
    # The patterns only start at a token boundary, so these take a millisecond, not
    # seconds of backtracking (not timed here: performance is measured, not asserted).
    assert redact(text) == expected
