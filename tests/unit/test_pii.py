"""PII redaction: identifiers, secrets and addresses are replaced before anything is stored;
prices, dates, order numbers and model names stay. The per-type figures on a labelled set
are in bench/pii.py (and held by tests/unit/test_pii_dataset.py)."""

from __future__ import annotations

import pytest

from rapport.profile.domain.facts import extract
from rapport.profile.domain.pii import (
    AADHAAR,
    ACCOUNT,
    ADDRESS,
    CARD,
    DNI,
    EMAIL,
    NIE,
    NINO,
    PHONE,
    PLACEHOLDERS,
    POSTCODE,
    SECRET,
    SIN,
    SSN,
    TOKEN,
    redact,
)

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


def test_placeholders_are_stable_under_redaction() -> None:
    assert PLACEHOLDERS == (
        EMAIL, PHONE, CARD, ACCOUNT, SECRET, TOKEN, ADDRESS, POSTCODE, SSN, NINO, SIN, AADHAAR,
        DNI, NIE,
    )  # fmt: skip
    assert len(set(PLACEHOLDERS)) == len(PLACEHOLDERS)
    text = " ".join(PLACEHOLDERS)
    assert redact(text) == text  # redacting twice changes nothing
    assert redact("my password is [secret] and my pin is [secret]") == (
        "my password is [secret] and my pin is [secret]"
    )


# Issue 29, tried as a user would.
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "my account number is 12345678 and my password is hunter2",
            "my account number is [account] and my password is [secret]",
        ),
        (
            "I live at 221B Baker Street, London NW1 6XE",
            "I live at [address], London [postcode]",
        ),
        ("my social security number is 078-05-1120", "my social security number is [ssn]"),
    ],
)
def test_the_issues_three_messages(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("my password is hunter2", "my password is [secret]"),
        ("the wifi password is Sunflower!22", "the wifi password is [secret]"),
        ("Password: P@ssw0rd", "Password: [secret]"),
        ("my pw is hunter2 lol", "my pw is [secret] lol"),
        ("my password for the portal is zX9#kq2L ok", "my password for the portal is [secret] ok"),
        ("I set the password to letmein99", "I set the password to [secret]"),
        ("wifi password is 'tea for two'", "wifi password is '[secret]'"),
        ("my password is sunflower", "my password is [secret]"),
        ("my pin is 4821", "my pin is [secret]"),
        ("PIN 0000 for the card", "PIN [secret] for the card"),
        ("my passcode is 908172", "my passcode is [secret]"),
        ("the one-time code is 739201", "the one-time code is [secret]"),
        ("here's the OTP: 55120931", "here's the OTP: [secret]"),
        ("your 2FA code 031394 didn't work", "your 2FA code [secret] didn't work"),
        ("the code you sent me is 550 213", "the code you sent me is [secret]"),
        ("door code 4512# please", "door code [secret]# please"),
        ("cvv 123", "cvv [secret]"),
    ],
)
def test_a_credential_after_its_keyword_is_redacted(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "token",
    [
        "sk-" + "aB3" * 16,
        "sk-proj-" + "Xy9_" * 14,
        "ghp_" + "a1B2" * 9,
        "gho_" + "Z9y8" * 9,
        "github_pat_" + "11ABCDEFG0" * 3 + "_" + "x1" * 20,
        "AKIAIOSFODNN7EXAMPLE",
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N",
        "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
        "xoxp-12345678901-123456789012-abcdef0123456789",
        "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc",
    ],
)
def test_token_shapes_are_redacted(token: str) -> None:
    assert redact(f"my key is {token} ok") == "my key is [token] ok"
    assert redact(f"export TOKEN={token}") == "export TOKEN=[token]"


def test_a_bearer_value_and_a_private_key_are_tokens() -> None:
    assert redact("Authorization: Bearer 9f8e7d6c5b4a39281706f5e4d3c2b1a0") == (
        "Authorization: Bearer [token]"
    )
    pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----"
    assert redact(f"here: {pem} thanks") == "here: [token] thanks"
    assert redact("api key: a1b2c3d4e5f6g7h8i9") == "api key: [token]"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ship to 12 Elm St, Apt 4B please", "ship to [address] please"),
        ("I'm at 742 Evergreen Terrace", "I'm at [address]"),
        ("1600 Amphitheatre Parkway, Mountain View, CA 94043",
         "[address], Mountain View, CA [postcode]"),
        ("send it to 221b baker street", "send it to [address]"),
        ("Apt 12, 400 W 42nd St, New York, NY 10036", "[address], New York, NY [postcode]"),
        ("Hauptstraße 12, 10115 Berlin", "[address], [postcode] Berlin"),
        ("Keizersgracht 123, 1015 CJ Amsterdam", "[address], [postcode] Amsterdam"),
        ("12 rue de Rivoli, 75001 Paris", "[address], [postcode] Paris"),
        ("Calle Mayor 5, Madrid", "[address], Madrid"),
        ("PO Box 1234", "[address]"),
        ("my postcode is sw1a 1aa", "my postcode is [postcode]"),
        ("I'm in London NW1 6XE", "I'm in London [postcode]"),
        ("postal code K1A 0B1", "postal code [postcode]"),
        ("zip code is 02139", "zip code is [postcode]"),
    ],
)  # fmt: skip
def test_street_addresses_and_postcodes_are_redacted_and_the_city_stays(
    text: str, expected: str
) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I live at 221B Baker Street, London NW1 6XE", "London"),
        ("we live at Hauptstraße 5, 10115 Berlin", "Berlin"),
        ("I live in Leeds, at 4 Oak Road, LS1 4AP", "Leeds"),
    ],
)
def test_the_city_after_a_redacted_address_is_still_a_location(text: str, expected: str) -> None:
    found = [(a.type, a.value) for a in extract(redact(text))]
    assert ("location", expected) in found


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("SSN 078-05-1120", f"SSN {SSN}"),
        ("078-05-1120", SSN),  # dashed: the shape is enough
        ("ssn 078051120", f"ssn {SSN}"),  # compact or spaced: after its keyword only
        ("social security 219 09 9999", f"social security {SSN}"),
        ("NI number: QQ 12 34 56 C".replace("QQ", "AB"), f"NI number: {NINO}"),
        ("nino ab123456c", f"nino {NINO}"),
        ("my SIN is 130 692 544", f"my SIN is {SIN}"),
        ("social insurance number 130-692-544", f"social insurance number {SIN}"),
        ("aadhaar 2345 6789 0124", f"aadhaar {AADHAAR}"),
        ("Aadhaar 499118665246", f"Aadhaar {AADHAAR}"),
        ("DNI 12345678Z", f"DNI {DNI}"),
        ("dni 12345678-z", f"dni {DNI}"),
        ("NIE X1234567L", f"NIE {NIE}"),
        ("NIE Y-1234567-X", f"NIE {NIE}"),
    ],
)
def test_national_ids_have_their_own_labels(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("666-12-3456", PHONE),  # area 666 is never issued: not an SSN
        ("900-12-3456", PHONE),  # nor 9xx
        ("130 692 544", PHONE),  # a SIN's shape without its keyword is a phone's
        ("my SIN is 130 692 545", f"my SIN is {PHONE}"),  # fails the Luhn check
        ("my SIN is 046 454 286", f"my SIN is {PHONE}"),  # 0 starts no issued SIN
        ("aadhaar 2345 6789 0123", f"aadhaar {ACCOUNT}"),  # fails the Verhoeff check
        ("DNI 12345678A", "DNI 12345678A"),  # wrong check letter: a code, like "RTX4090A"
    ],
)
def test_an_id_failing_its_check_is_not_given_the_ids_label(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        # words around secrets, codes that are not secrets
        "I forgot my password",
        "the password reset link never arrived",
        "my password is too long",
        "is my password secure?",
        "password manager recommendations?",
        "the PIN pad is broken",
        "my pin is not working",
        "set a 6 digit PIN",
        "what is a one-time code?",
        "the OTP never came",
        "my api key expired",
        "which token standard is best?",
        "promo code SAVE20 didn't work",
        "discount code SUMMER2024",
        "the sk-ii essence",
        # order numbers, model names, quantities
        "order #A-12345 hasn't arrived",
        "what about ORD-2024-00017?",
        "order number 12345678 is late",
        "SKU 100-200-33",
        "iPhone 15 Pro or the RTX 4090",
        "Dell XPS 13 9340",
        "MacBook Air M2 with 8GB",
        "PS5 with a 2TB drive",
        "we walked 5 miles down the road",
        "2 more days this way",
        "the 5th Avenue store",
        "Baker Street station",
        "room 101, gate B22",
        "NW1 is a nice area",
        "delivery on 2026-12-07 at 10:30",
        "it costs $1,299.00 now",
        "under £45 please",
    ],
)
def test_look_alikes_are_kept(text: str) -> None:
    assert redact(text) == text


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
