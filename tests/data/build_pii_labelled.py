"""Writes ``tests/data/pii_labelled.jsonl``: chat messages with their personal identifiers
labelled by character span, and look-alikes that must stay untouched.

    .venv/bin/python -m tests.data.build_pii_labelled

Deterministic (one seeded ``random.Random``): the same file every run. How the set is
built, and why it is split by template, is in ``tests/data/pii_labelled.md``.
"""

from __future__ import annotations

import json
import random
import re
import string
from collections.abc import Callable
from pathlib import Path

OUT = Path(__file__).resolve().parent / "pii_labelled.jsonl"
SEED = 29
SLOT = re.compile(r"\{(\w+)\}")

# Every labelled type; IBANs and account numbers are both redacted as [account].
TYPES = (
    "email", "phone", "card", "iban", "account", "secret", "token", "address", "postcode",
    "ssn", "nino", "sin", "aadhaar", "dni", "nie",
)  # fmt: skip

# ---------------------------------------------------------------- value makers


def luhn_digit(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return str((10 - total % 10) % 10)


def digits(r: random.Random, n: int) -> str:
    return "".join(r.choice(string.digits) for _ in range(n))


def group(value: str, sizes: tuple[int, ...], sep: str) -> str:
    out, i = [], 0
    for size in sizes:
        out.append(value[i : i + size])
        i += size
    return sep.join(out)


def card(r: random.Random) -> str:
    kind = r.choice(["visa", "visa", "mc", "amex", "discover"])
    if kind == "amex":
        body = r.choice(["34", "37"]) + digits(r, 12)
        number = body + luhn_digit(body)
        return group(number, (4, 6, 5), r.choice([" ", "-", ""])).strip()
    prefix = {"visa": "4", "mc": r.choice(["51", "52", "53", "54", "55"]), "discover": "6011"}
    body = prefix[kind] + digits(r, 15 - len(prefix[kind]))
    number = body + luhn_digit(body)
    return group(number, (4, 4, 4, 4), r.choice([" ", " ", "-", ""]))


IBAN_SHAPES = {  # country: (bank code maker, total length)
    "DE": 22, "GB": 22, "FR": 27, "ES": 24, "NL": 18, "IT": 27, "BE": 16, "IE": 22,
}  # fmt: skip


def iban(r: random.Random) -> str:
    country = r.choice(sorted(IBAN_SHAPES))
    length = IBAN_SHAPES[country]
    if country in {"GB", "IE"}:
        bban = "".join(r.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(4)) + digits(r, 14)
    elif country == "NL":
        bban = "".join(r.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(4)) + digits(r, 10)
    elif country == "IT":
        bban = r.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") + digits(r, 22)
    else:
        bban = digits(r, length - 4)
    rearranged = bban + country + "00"
    check = 98 - int("".join(str(int(ch, 36)) for ch in rearranged)) % 97
    compact = f"{country}{check:02d}{bban}"
    if r.random() < 0.5:
        return compact
    return " ".join(compact[i : i + 4] for i in range(0, len(compact), 4))


def ssn(r: random.Random) -> str:
    while True:
        area = r.randint(1, 899)
        if area != 666:
            break
    return f"{area:03d}-{r.randint(1, 99):02d}-{r.randint(1, 9999):04d}"


NINO_FIRST = "ABCEGHJKLMNOPRSTWXYZ"
NINO_SECOND = "ABCEGHJKLMNPRSTWXYZ"


def nino(r: random.Random) -> str:
    while True:
        prefix = r.choice(NINO_FIRST) + r.choice(NINO_SECOND)
        if prefix not in {"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"}:
            break
    body = digits(r, 6)
    suffix = r.choice("ABCD")
    if r.random() < 0.5:
        return f"{prefix}{body}{suffix}"
    return f"{prefix} {body[:2]} {body[2:4]} {body[4:]} {suffix}"


def sin(r: random.Random) -> str:
    body = r.choice("1234567") + digits(r, 7)
    number = body + luhn_digit(body)
    return group(number, (3, 3, 3), r.choice([" ", "-", " "]))


# Verhoeff tables (the Aadhaar check digit).
_D = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 2, 3, 4, 0, 6, 7, 8, 9, 5], [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
    [3, 4, 0, 1, 2, 8, 9, 5, 6, 7], [4, 0, 1, 2, 3, 9, 5, 6, 7, 8], [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
    [6, 5, 9, 8, 7, 1, 0, 4, 3, 2], [7, 6, 5, 9, 8, 2, 1, 0, 4, 3], [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
    [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
]  # fmt: skip
_P = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 5, 7, 6, 2, 8, 3, 0, 9, 4], [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
    [8, 9, 1, 6, 0, 4, 3, 5, 2, 7], [9, 4, 5, 3, 1, 2, 6, 8, 7, 0], [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
    [2, 7, 9, 3, 8, 0, 6, 4, 1, 5], [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
]  # fmt: skip
_INV = [0, 4, 3, 2, 1, 5, 6, 7, 8, 9]


def verhoeff_digit(body: str) -> str:
    c = 0
    for i, ch in enumerate(reversed(body)):
        c = _D[c][_P[(i + 1) % 8][int(ch)]]
    return str(_INV[c])


def aadhaar(r: random.Random) -> str:
    body = r.choice("23456789") + digits(r, 10)
    number = body + verhoeff_digit(body)
    return group(number, (4, 4, 4), r.choice([" ", " ", "-"]))


DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"


def dni(r: random.Random) -> str:
    number = digits(r, 8)
    return number + r.choice(["", "", "-"]) + DNI_LETTERS[int(number) % 23]


def nie(r: random.Random) -> str:
    first = r.choice("XYZ")
    number = digits(r, 7)
    letter = DNI_LETTERS[int(str("XYZ".index(first)) + number) % 23]
    return f"{first}{number}{letter}" if r.random() < 0.7 else f"{first}-{number}-{letter}"


FIRST = ["jane", "john", "maria", "li", "ahmed", "sofia", "lucas", "emma", "noah", "priya", "kofi"]
LAST = ["doe", "smith", "garcia", "chen", "khan", "rossi", "muller", "okafor", "patel", "silva"]
DOMAINS = ["example.com", "mail.co.uk", "gmail.com", "outlook.fr", "proton.me", "uni-bonn.de"]


def email(r: random.Random) -> str:
    first, last = r.choice(FIRST), r.choice(LAST)
    local = r.choice([f"{first}.{last}", f"{first}{last}{r.randint(1, 99)}", f"{first[0]}{last}",
                      f"{first}+shop", f"{first.upper()}.{last.title()}"])  # fmt: skip
    return f"{local}@{r.choice(DOMAINS)}"


def phone(r: random.Random) -> str:
    shapes: list[Callable[[], str]] = [
        lambda: f"({r.randint(201, 989)}) {r.randint(200, 999)}-{digits(r, 4)}",
        lambda: f"+1 {r.randint(201, 989)} {r.randint(200, 999)} {digits(r, 4)}",
        lambda: f"{r.randint(201, 989)}-{r.randint(200, 999)}-{digits(r, 4)}",
        lambda: f"+44 20 {r.randint(7000, 8999)} {digits(r, 4)}",
        lambda: f"07{r.randint(100, 999)} {digits(r, 6)}",
        lambda: "06 " + " ".join(digits(r, 2) for _ in range(4)),
        lambda: f"+49 30 {digits(r, 7)}",
        lambda: f"+34 6{digits(r, 2)} {digits(r, 3)} {digits(r, 3)}",
        lambda: f"+91 9{digits(r, 4)} {digits(r, 5)}",
        lambda: f"{r.randint(201, 989)}.{r.randint(200, 999)}.{digits(r, 4)}",
    ]
    return r.choice(shapes)()


def account(r: random.Random) -> str:
    return r.choice([digits(r, 8), digits(r, 10), digits(r, 6), digits(r, 12)])


PASSWORDS = [
    "hunter2", "Tr0ub4dor&3", "sunflower22", "P@ssw0rd!", "correcthorse", "Bailey2019",
    "qwerty123", "m0nkeyBus!", "letmein99", "Dragonfly", "zX9#kq2L", "blue-Whale-77",
]  # fmt: skip


def password(r: random.Random) -> str:
    return r.choice(PASSWORDS)


def pin(r: random.Random) -> str:
    return digits(r, r.choice([4, 4, 6]))


def otp(r: random.Random) -> str:
    return digits(r, r.choice([6, 6, 8]))


ALNUM = string.ascii_letters + string.digits


def rand(r: random.Random, n: int, alphabet: str = ALNUM) -> str:
    while True:
        out = "".join(r.choice(alphabet) for _ in range(n))
        if any(c.isdigit() for c in out) and any(c.isalpha() for c in out):
            return out


def token(r: random.Random) -> str:
    b64url = ALNUM + "-_"
    shapes: list[Callable[[], str]] = [
        lambda: "sk-" + rand(r, 48),
        lambda: "sk-proj-" + rand(r, 56, b64url),
        lambda: "ghp_" + rand(r, 36),
        lambda: "gho_" + rand(r, 36),
        lambda: "github_pat_" + rand(r, 22) + "_" + rand(r, 59),
        lambda: "AKIA" + rand(r, 16, string.ascii_uppercase + string.digits),
        lambda: (
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ"
            + rand(r, 40, b64url)
            + "."
            + rand(r, 43, b64url)
        ),
        lambda: "xoxb-" + digits(r, 12) + "-" + digits(r, 13) + "-" + rand(r, 24),
        lambda: "xoxp-" + digits(r, 11) + "-" + digits(r, 12) + "-" + rand(r, 32),
    ]
    return r.choice(shapes)()


HOUSE = ["221B", "12", "1600", "4", "350", "27a", "9", "1428", "77", "310", "5", "18-20"]
STREET_NAMES = [
    "Baker",
    "Elm",
    "Main",
    "Oak",
    "Maple",
    "Abbey",
    "Church",
    "Victoria",
    "Park",
    "Sunset",
    "Amphitheatre",
    "King",
    "Queen",
    "Mill",
    "Pennsylvania",
    "5th",
    "42nd",
]
STREET_TYPES = [
    "Street",
    "St",
    "Road",
    "Rd",
    "Avenue",
    "Ave",
    "Lane",
    "Boulevard",
    "Blvd",
    "Drive",
    "Dr",
    "Court",
    "Place",
    "Way",
    "Close",
    "Crescent",
    "Terrace",
    "Parkway",
]


def address(r: random.Random) -> str:
    shape = r.random()
    if shape < 0.7:
        text = f"{r.choice(HOUSE)} {r.choice(STREET_NAMES)} {r.choice(STREET_TYPES)}"
        if r.random() < 0.15:
            text = text.lower()
        if r.random() < 0.15:
            text += f", Apt {r.randint(1, 40)}{r.choice(['', 'B'])}"
        return text
    return r.choice(
        [
            f"Hauptstraße {r.randint(1, 200)}",
            f"Keizersgracht {r.randint(1, 700)}",
            f"{r.randint(1, 150)} rue de Rivoli",
            f"Calle Mayor {r.randint(1, 90)}",
            f"Via Roma {r.randint(1, 120)}",
            f"Bahnhofstrasse {r.randint(1, 90)}",
            f"{r.randint(2, 80)} avenue des Champs-Élysées",
            f"PO Box {r.randint(100, 9999)}",
        ]
    )


UK_POSTCODES = ["NW1 6XE", "SW1A 1AA", "EC1A 1BB", "M1 1AE", "B33 8TH", "CR2 6XH", "DN55 1PT",
                "W1A 0AX", "EH1 1YZ", "LS1 4AP", "G2 3DX", "BS1 5TR"]  # fmt: skip
US_ZIPS = [("CA", "94043"), ("NY", "10001"), ("IL", "62704"), ("TX", "73301-0001"),
           ("WA", "98109"), ("MA", "02139"), ("FL", "33101-1234"), ("CO", "80202")]  # fmt: skip
CA_POSTCODES = ["K1A 0B1", "M5V 3L9", "H2X 1Y4", "V6B 4Y8", "T2P 2M5"]
NL_POSTCODES = ["1015 CJ", "3011 AD", "2511 BT", "3512 JE"]
DE_POSTCODES = ["10115", "80331", "20095", "50667"]


def uk_postcode(r: random.Random) -> str:
    return r.choice(UK_POSTCODES)


def ca_postcode(r: random.Random) -> str:
    return r.choice(CA_POSTCODES)


MAKERS: dict[str, Callable[[random.Random], str]] = {
    "email": email, "phone": phone, "card": card, "iban": iban, "account": account,
    "password": password, "pin": pin, "otp": otp, "token": token, "address": address,
    "ukpost": uk_postcode, "capost": ca_postcode, "ssn": ssn, "nino": nino, "sin": sin,
    "aadhaar": aadhaar, "dni": dni, "nie": nie,
}  # fmt: skip
# A slot's labelled type when it is not the slot's own name.
SLOT_TYPE = {"password": "secret", "pin": "secret", "otp": "secret", "ukpost": "postcode",
             "capost": "postcode"}  # fmt: skip

# Words and numbers around the identifiers: never labelled.
FILLERS: dict[str, Callable[[random.Random], str]] = {
    "city": lambda r: r.choice(["London", "Leeds", "Toronto", "Berlin", "Madrid", "Austin"]),
    "price": lambda r: r.choice(["$1,299.00", "£45", "€89.99", "$20", "250 euros", "£1,050"]),
    "date": lambda r: r.choice(["2026-12-07", "12/07/2026", "7 Dec", "next Friday", "31.01.2026"]),
    "time": lambda r: r.choice(["10:30", "3:45pm", "18:00", "9am"]),
    "order": lambda r: r.choice(["order #A-12345", "ORD-2024-00017", "order 48213", "#88213"]),
    "model": lambda r: r.choice(
        ["iPhone 15 Pro", "RTX 4090", "XPS 13 9340", "Galaxy S24", "PS5", "MacBook Air M2"]
    ),
}

# ---------------------------------------------------------------- templates
# Each type's templates alternate dev, test, dev, test... (the split is by template: no
# phrasing of the test half is seen while the rules are tuned on the dev half).

TEMPLATES: dict[str, list[str]] = {
    "email": [
        "my email is {email}",
        "You can reach me at {email} after {time}.",
        "send the receipt for {order} to {email} please",
        "{email} is my work address, use it for the invoice",
        "contact: {email}",
        "I changed my login email to {email} yesterday",
        "Please cc {email} and {email} on the {model} quote.",
        "is {email} the right one on file?",
    ],
    "phone": [
        "call me on {phone}",
        "my number is {phone}, best after {time}",
        "Text {phone} when the {model} ships",
        "you can ring my mobile {phone} or the office",
        "Phone: {phone}",
        "the courier should call {phone} on {date}",
        "my new cell is {phone} (the old one is gone)",
        "please update my phone to {phone}",
    ],
    "card": [
        "my card is {card}",
        "charge {card} for the {price} one",
        "Card number {card}, expiry 09/28",
        "use the visa ending... actually the full number is {card}",
        "I paid with {card} on {date}",
        "can you refund to {card}?",
        "{card} exp 11/27 cvv on the back",
        "the card I used for {order} was {card}",
    ],
    "iban": [
        "my IBAN is {iban}",
        "wire it to {iban} please",
        "IBAN: {iban} (Sparkasse)",
        "refund the {price} to {iban}",
        "Bank details {iban}, name on the account is mine",
        "send it to this account {iban} thanks",
    ],
    "account": [
        "my account number is {account}",
        "account no. {account} at HSBC",
        "Acct {account}",
        "pay into account {account} please",
        "the bank account is {account}, sort code is the usual",
        "Account #{account} was charged twice for {order}",
    ],
    "secret": [
        "my password is {password}",
        "the wifi password is {password}",
        "Password: {password}",
        "my pin is {pin}",
        "PIN {pin} for the card",
        "the one-time code is {otp}",
        "my pw is {password} lol",
        "here's the OTP: {otp}",
        "my passcode is {pin}",
        "login password for the app = {password}",
        "the verification code you sent was {otp}",
        "my password for the portal is {password} if you need it",
        "pin number: {pin}",
        "your 2FA code {otp} didn't work",
        "I set the password to {password} yesterday",
        "my banking PIN is {pin}, don't tell anyone",
        "security code is {otp}",
        "passwd {password}",
    ],
    "token": [
        "here is my api key {token}",
        "my OpenAI key: {token}",
        "I pasted {token} into the config and it fails",
        "token = {token}",
        "Authorization: Bearer {token}",
        "does {token} still work?",
        "the key {token} was leaked on {date}",
        "export GITHUB_TOKEN={token}",
        "use this one: {token}",
        "my aws access key id is {token}",
    ],
    "address": [
        "I live at {address}",
        "ship it to {address}, {city}",
        "my address is {address}",
        "Deliver to {address} on {date}",
        "we moved to {address} last month",
        "home: {address}",
        "send the {model} to {address} please",
        "the billing address is {address}, {city}",
        "I'm at {address} until {time}",
        "can you change my delivery address to {address}?",
        "our office is {address}",
        "bring it round to {address}",
    ],
    "postcode": [
        "I live at {address}, {city} {ukpost}",
        "my postcode is {ukpost}",
        "postcode {ukpost} please",
        "I'm in {city} {ukpost}",
        "my postal code is {capost}",
        "deliver to {address}, Toronto, ON {capost}",
        "is {ukpost} in your delivery area?",
        "zip code is {uszip}",
        "ship to {address}, Springfield, {usstate} {uszip}",
        "{address}, {nlpost} Amsterdam",
        "{address}, {depost} Berlin",
        "the ZIP is {uszip}",
    ],
    "ssn": [
        "my ssn is {ssn}",
        "SSN: {ssn}",
        "social security number {ssn}",
        "they asked for my social security number, it's {ssn}",
        "{ssn} is my SSN",
        "for the tax form: {ssn}",
        "here you go {ssn}",
        "my social is {ssn}",
    ],
    "nino": [
        "my national insurance number is {nino}",
        "NI number: {nino}",
        "NINO {nino}",
        "for payroll my NI no is {nino}",
        "here's my national insurance {nino}",
        "{nino} is my NI number",
    ],
    "sin": [
        "my SIN is {sin}",
        "social insurance number: {sin}",
        "SIN {sin} for the tax slip",
        "my social insurance number is {sin}",
        "Numéro d'assurance sociale {sin}",
        "the SIN on file should be {sin}",
    ],
    "aadhaar": [
        "my aadhaar number is {aadhaar}",
        "Aadhaar: {aadhaar}",
        "aadhar {aadhaar} for the KYC",
        "my Aadhaar card number is {aadhaar}",
        "UID {aadhaar}",
        "KYC done with {aadhaar}",
    ],
    "dni": [
        "mi DNI es {dni}",
        "DNI: {dni}",
        "my Spanish ID number is {dni}",
        "el DNI {dni} para la factura",
        "ID {dni}",
        "my dni {dni}",
    ],
    "nie": [
        "mi NIE es {nie}",
        "NIE: {nie}",
        "my foreigner id (NIE) is {nie}",
        "número de NIE {nie}",
        "here's my NIE {nie}",
        "NIE {nie} for the contract",
    ],
}

# Messages with several identifiers of different types (both splits).
MIXED = [
    "my account number is {account} and my password is {password}",
    "I'm {city} based, email {email}, phone {phone}",
    "card {card} and pin {pin}",
    "SSN {ssn}, address {address}",
    "send {token} to {email}",
    "ship to {address}, {city} {ukpost}, call {phone} on arrival",
    "my IBAN is {iban} and my ssn is {ssn}",
    "NI {nino}; password: {password}",
    "mi DNI es {dni} y mi correo {email}",
    "aadhaar {aadhaar}, mobile {phone}",
    "the otp was {otp} and the card {card}",
    "my SIN is {sin} and my postal code is {capost}",
]

# The three messages of issue 29, as a user sent them: (text, [(value, type)]).
ISSUE = [
    ("my account number is 12345678 and my password is hunter2",
     [("12345678", "account"), ("hunter2", "secret")]),
    ("I live at 221B Baker Street, London NW1 6XE",
     [("221B Baker Street", "address"), ("NW1 6XE", "postcode")]),
    ("my social security number is 078-05-1120, keep it safe", [("078-05-1120", "ssn")]),
]  # fmt: skip

# Written by hand as people type, after the templates and without running any redactor
# on them first: odd spacing, lower case, identifiers inside code, several at once.
HAND = [
    # (text, [(value, type)], split): the split is fixed per row, so that editing the list
    # never moves a row from one half to the other.
    ("pwd for netflix: blue42sky", [("blue42sky", "secret")], "dev"),
    ("the alarm code's 1984 btw", [("1984", "secret")], "test"),
    ("door code 4512# and the lift is on the left", [("4512", "secret")], "dev"),
    ("login bob / pass: Summer2024!", [("Summer2024!", "secret")], "test"),
    ("wifi password is 'tea for two'", [("tea for two", "secret")], "dev"),
    ("my password is sunflower", [("sunflower", "secret")], "test"),
    ("PIN: 0000 (I know, I know)", [("0000", "secret")], "dev"),
    ("new passcode 908172, old one was 112233", [("908172", "secret")], "test"),
    (
        'OPENAI_API_KEY="sk-proj-4fGh7Jk2LmN9pQr3StU6vWx8Yz1AbC5dEf0GhI2jKl4MnO6"',
        [("sk-proj-4fGh7Jk2LmN9pQr3StU6vWx8Yz1AbC5dEf0GhI2jKl4MnO6", "token")],
        "dev",
    ),
    (
        "curl -H 'Authorization: Bearer 9f8e7d6c5b4a39281706f5e4d3c2b1a0' https://api.example.io",
        [("9f8e7d6c5b4a39281706f5e4d3c2b1a0", "token")],
        "test",
    ),
    ("aws_access_key_id = AKIAIOSFODNN7EXAMPLE", [("AKIAIOSFODNN7EXAMPLE", "token")], "dev"),
    (
        "my github token ghp_16C7e42F292c6912E7710c838347Ae178B4a is in the readme",
        [("ghp_16C7e42F292c6912E7710c838347Ae178B4a", "token")],
        "test",
    ),
    (
        "address: flat 3, 14 Hillside Gardens, Bristol BS8 1TH",
        [("flat 3, 14 Hillside Gardens", "address"), ("BS8 1TH", "postcode")],
        "dev",
    ),
    ("I'm at 742 Evergreen Terrace Springfield", [("742 Evergreen Terrace", "address")], "test"),
    ("123 Main St., Anytown, CA 90210", [("123 Main St", "address"), ("90210", "postcode")], "dev"),
    ("postcode is sw1a 1aa", [("sw1a 1aa", "postcode")], "test"),
    ("zip 90210 pls", [("90210", "postcode")], "dev"),
    (
        "deliver to 1 Chome-1-2 Oshiage, Sumida City, Tokyo 131-0045",
        [("1 Chome-1-2 Oshiage", "address"), ("131-0045", "postcode")],
        "test",
    ),
    (
        "we live on 5th floor, 48 Rue Oberkampf, 75011 Paris",
        [("48 Rue Oberkampf", "address"), ("75011", "postcode")],
        "dev",
    ),
    (
        "Send it to Herengracht 182, 1016 BR Amsterdam",
        [("Herengracht 182", "address"), ("1016 BR", "postcode")],
        "test",
    ),
    ("ssn 123456789 for the form", [("123456789", "ssn")], "dev"),
    ("SSN is 219 09 9999", [("219 09 9999", "ssn")], "test"),
    ("my sin is 130 692 544", [("130 692 544", "sin")], "dev"),
    ("NI no. JG 10 37 52 A", [("JG 10 37 52 A", "nino")], "test"),
    ("Aadhaar 499118665246", [("499118665246", "aadhaar")], "dev"),
    ("dni 12345678z", [("12345678z", "dni")], "test"),
    ("card no 4242424242424242 cvc 123", [("4242424242424242", "card"), ("123", "secret")], "dev"),
    ("call me 0044 20 7946 0958", [("0044 20 7946 0958", "phone")], "test"),
    ("mob. 0612345678", [("0612345678", "phone")], "dev"),
    (
        "reach me: ana_p@correo.es / +34 699 123 456",
        [("ana_p@correo.es", "email"), ("+34 699 123 456", "phone")],
        "dev",
    ),
    (
        "IBAN GB33BUKB20201555555555, sort code 20-20-15",
        [("GB33BUKB20201555555555", "iban"), ("20-20-15", "account")],
        "test",
    ),
    ("my ssn? 078-05-1120. my pw? letmein", [("078-05-1120", "ssn"), ("letmein", "secret")], "dev"),
    (
        "passphrase: correct horse battery staple",
        [("correct horse battery staple", "secret")],
        "test",
    ),
    ("the code they texted me is 550 213", [("550 213", "secret")], "dev"),
    # First written as look-alikes; an address-shaped phrase is an address to a redactor
    # (it cannot know which are fictional), so they were moved here after the first run.
    ("100 Main Street vibes in this game", [("100 Main Street", "address")], "test"),
    ("4 Privet Drive is a fictional address", [("4 Privet Drive", "address")], "dev"),
    (
        "Apt 12, 400 W 42nd St, New York, NY 10036",
        [("Apt 12, 400 W 42nd St", "address"), ("10036", "postcode")],
        "test",
    ),
]

# Look-alikes written by hand in the same spirit: numbers and words of everyday chat.
HAND_LOOKALIKES = [
    "the Model 3 Long Range or the Model Y?", "I need 2 AA batteries", "HDMI 2.1 port",
    "the 405 freeway was jammed", "Apartment hunting in 2026 is awful", "my PIN expired",
    "the code doesn't compile on Python 3.11", "password123 is a terrible password, right?",
    "what does OTP stand for", "set a 6 digit PIN", "the token is in the email you sent",
    "we're flying on 12/24 at 06:45", "my postcode checker says no", "zip it",
    "room 4B, building 7", "it's 221 pages long", "bus 73 to Oxford Street",
    "The 3 Baker boys", "send 2 more by Friday", "NW1 is a nice area",
]  # fmt: skip

# Look-alikes: shapes near the identifiers above that identify nobody. Hand-written.
LOOKALIKES = [
    # prices
    "it costs $1,299.00 now",
    "under £45 please",
    "budget is 1.200,50 €",
    "€89.99 on sale",
    "12 000 000 euros is too much",
    "50% off until Friday",
    "I paid 1299.99 for it",
    "something around $2,500",
    "price went from 349 to 399",
    "is it 19.99 or 29.99?",
    "£1,050 all in",
    "a 250 euro gift card",
    "USD 1,000 max",
    "10k budget",
    # dates and times
    "delivery on 2026-12-07",
    "booked for 12/07/2026",
    "on 31.01.2026 at 10:30",
    "from 2019-2020 I lived abroad",
    "the 3rd of March",
    "meet at 3:45pm",
    "by 18:00 today",
    "my birthday is 07/12",
    "between 2024-01-01 and 2024-03-31",
    "Q3 2025 release",
    "it arrived 01-31-2026",
    "leaving 14:30 on Friday, back 23:15",
    # order, invoice, ticket numbers
    "order #A-12345 hasn't arrived",
    "what about ORD-2024-00017?",
    "order 48213 is late",
    "invoice INV-000123 is wrong",
    "ticket #48213 still open",
    "case CS-2291-88 please",
    "return RMA 55-1234",
    "my booking ref is QX7P2L",
    "tracking 1Z999AA10123456784",
    "order number 7781 was missing a cable",
    "invoice 2024/0017",
    "SKU 100-200-33",
    # model names, versions, sizes
    "iPhone 15 Pro or 15 Pro Max?",
    "the RTX 4090 FE",
    "Dell XPS 13 9340",
    "a Galaxy S24 Ultra",
    "MacBook Air M2 with 8GB",
    "PS5 with a 2TB drive",
    "Sony WH-1000XM5",
    "ThinkPad X1 Carbon Gen 11",
    "Pixel 8a",
    "Canon EOS R6 Mark II",
    "LG OLED55C3",
    "version 2.3.1",
    "Python 3.12.1",
    "firmware v10.4.7",
    "Windows 11 23H2",
    "size 10.5 US",
    "model SM-G991B",
    "iOS 17.4",
    "A4 paper, 80gsm",
    "a 65-inch TV",
    "USB-C 3.2 Gen 2",
    "Route 66 t-shirt",
    # quantities and everyday numbers
    "2 kids 3 dogs",
    "I need 4 x 500 ml",
    "we walked 5 miles down the road",
    "2 more days this way",
    "room 101",
    "gate B22, seat 14C",
    "flight BA 2490",
    "platform 9",
    "I'm 34 and my wife is 36",
    "call in 10 minutes",
    "top 10 street food spots",
    "3 bedroom house near the park",
    "page 221",
    "chapter 12 of the book",
    "the 5th Avenue store",
    "Baker Street station",
    "Main Street is closed",
    "we have 12 Oak trees",
    "level 42 in the game",
    "a 1600 word essay",
    # secrets and tokens in words only
    "I forgot my password",
    "the password reset link never arrived",
    "my password is too long",
    "password manager recommendations?",
    "the PIN pad is broken",
    "my pin is not working",
    "what is a one-time code?",
    "the OTP never came",
    "my api key expired",
    "which token standard is best?",
    "where do I find my passcode?",
    "is my password secure?",
    "promo code SAVE20 didn't work",
    "discount code SUMMER2024",
    "gift code please",
    "the sk-ii essence",
    "ghp means nothing to me",
    "a JWT expired error",
    # identifiers of things, not people
    "ISBN 978-0-306-40615-7",
    "postcode lookup is broken",
    "what's your zip code coverage?",
    "area code 212",
    "the 1099 form",
    "W-2 and 1040 are ready",
    "error 404",
    "HTTP 500",
    "rated 4.5 out of 5",
    "coordinates 51.5074, -0.1278",
    "IP 192.168.1.1 in the router",
    "we are 100-200 people",
    "ages 3-5",
    "mix 2:1 ratio",
]

# ---------------------------------------------------------------- building


def fill(template: str, r: random.Random) -> tuple[str, list[dict[str, object]]]:
    text, spans, pos = "", [], 0
    state = r.choice(US_ZIPS)
    for m in SLOT.finditer(template):
        text += template[pos : m.start()]
        pos = m.end()
        slot = m.group(1)
        if slot in FILLERS:
            text += FILLERS[slot](r)
            continue
        if slot == "usstate":
            text += state[0]
            continue
        if slot == "uszip":
            value, kind = state[1], "postcode"
        elif slot == "nlpost":
            value, kind = r.choice(NL_POSTCODES), "postcode"
        elif slot == "depost":
            value, kind = r.choice(DE_POSTCODES), "postcode"
        else:
            value, kind = MAKERS[slot](r), SLOT_TYPE.get(slot, slot)
        spans.append({"start": len(text), "end": len(text) + len(value), "type": kind,
                      "value": value})  # fmt: skip
        text += value
    return text + template[pos:], spans


def located(text: str, found: list[tuple[str, str]]) -> list[dict[str, object]]:
    """Spans of hand-written rows: each value where it first occurs."""
    spans: list[dict[str, object]] = []
    for value, kind in found:
        start = text.index(value)
        spans.append({"start": start, "end": start + len(value), "type": kind, "value": value})
    return spans


def build() -> list[dict[str, object]]:
    r = random.Random(SEED)
    rows: list[dict[str, object]] = []

    def add(text: str, spans: list[dict[str, object]], kind: str, split: str, source: str) -> None:
        rows.append({"id": f"p{len(rows) + 1:03d}", "text": text, "spans": spans, "kind": kind,
                     "split": split, "template": source})  # fmt: skip

    for type_, templates in TEMPLATES.items():
        # Two messages a template (three for the types with the most ways to be said).
        copies = 3 if type_ in {"secret", "token", "address", "postcode"} else 2
        for i, template in enumerate(templates):
            split = "dev" if i % 2 == 0 else "test"
            for _ in range(copies):
                text, spans = fill(template, r)
                add(text, spans, "pii", split, f"{type_}:{i}")
    for i, template in enumerate(MIXED):
        for _ in range(2):
            text, spans = fill(template, r)
            add(text, spans, "mixed", "dev" if i % 2 == 0 else "test", f"mixed:{i}")
    for text, found in ISSUE:
        add(text, located(text, found), "mixed", "dev", "issue")
    for i, (text, found, split) in enumerate(HAND):
        add(text, located(text, found), "hand", split, f"hand:{i}")
    for i, text in enumerate(HAND_LOOKALIKES):
        add(text, [], "lookalike", "dev" if i % 2 == 0 else "test", f"hand-lookalike:{i}")
    for i, text in enumerate(LOOKALIKES):
        add(text, [], "lookalike", "dev" if i % 2 == 0 else "test", f"lookalike:{i}")
    return rows


def main() -> None:
    rows = build()
    for row in rows:
        for span in row["spans"]:  # type: ignore[attr-defined]
            assert span["type"] in TYPES, span
            assert str(row["text"])[span["start"] : span["end"]] == span["value"], row
    with OUT.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"wrote {len(rows)} rows to {OUT}")


if __name__ == "__main__":
    main()
