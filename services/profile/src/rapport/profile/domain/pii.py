"""Redact personal identifiers and secrets from a chat message before anything is stored.

Pure and fast (it runs on every chat message): precompiled regexes, applied in a fixed
order because the shapes overlap. A placeholder has no digit and no keyword in it, so
what one step took is invisible to the steps after it:

1. e-mail addresses                                                   -> ``[email]``
2. token shapes: ``sk-``/``sk-proj-``, ``ghp_``/``gho_``/``github_pat_``, ``AKIA...``,
   JWTs, Slack ``xoxb-``/``xoxp-``, Stripe, Google and Hugging Face keys, a PEM private
   key, the value after ``Bearer``                                    -> ``[token]``
3. a credential after its keyword: password, pw, passcode, PIN, one-time, verification
   or 2FA code, OTP, CVV (the value only)                             -> ``[secret]``;
   an API key or token after its keyword                              -> ``[token]``
4. IBANs (mod-97 valid, or upper-case with 8+ digits)                 -> ``[account]``
5. national ids by format and check: US SSN (``NNN-NN-NNNN``, no area 000, 666 or
   9xx), UK National Insurance number, Canadian SIN (after its keyword, Luhn), Aadhaar
   (Verhoeff), Spanish DNI and NIE (check letter)  -> ``[ssn]`` ``[nino]`` ``[sin]``
   ``[aadhaar]`` ``[dni]`` ``[nie]``
6. payment cards: 13-19 digits, Luhn-valid                            -> ``[card]``
7. digits after "account", "acct", "routing", "sort code"             -> ``[account]``
8. street addresses: a house number, a name and a street type ("221B Baker Street",
   "12 Elm St, Apt 4"), the continental orders ("Hauptstraße 12", "12 rue de Rivoli",
   "Calle Mayor 5"), PO boxes                                         -> ``[address]``
9. postcodes: UK and Canadian shapes (as printed, upper case), a ZIP after a US state,
   a code after "postcode"/"zip", a code right after an address       -> ``[postcode]``
10. phone numbers: +country code, (area) code, or grouped             -> ``[phone]``
11. any other run of 8+ digits, possibly grouped                      -> ``[account]``

The city stays ("[address], London [postcode]"): it is no identifier on its own, and
memory may still keep it as a location.

Left alone: prices (``$1,200``, ``12 000 000 euros``), dates (``2025-01-31``,
``31/01/2025``), times (``10:30``), years and year ranges, short order numbers and any
number after "order", "invoice", "ticket", "tracking", "SKU"..., model names (``ps5``,
``iPhone 15 Pro``, ``XPS 13 9340``), versions, quantities ("5 miles down the road"),
ISBN-13s, and the words around a secret ("I forgot my password", "the PIN pad is
broken", "promo code SAVE20").
"""

from __future__ import annotations

import re
from collections.abc import Callable

EMAIL = "[email]"
PHONE = "[phone]"
CARD = "[card]"
ACCOUNT = "[account]"
SECRET = "[secret]"  # noqa: S105 - a placeholder, not a password
TOKEN = "[token]"  # noqa: S105 - a placeholder, not a token
ADDRESS = "[address]"
POSTCODE = "[postcode]"
SSN = "[ssn]"
NINO = "[nino]"
SIN = "[sin]"
AADHAAR = "[aadhaar]"
DNI = "[dni]"
NIE = "[nie]"
PLACEHOLDERS: tuple[str, ...] = (
    EMAIL, PHONE, CARD, ACCOUNT, SECRET, TOKEN, ADDRESS, POSTCODE, SSN, NINO, SIN, AADHAAR,
    DNI, NIE,
)  # fmt: skip

# What a message must contain for a step to match; most messages have none of it.
# Substring tests on the lower-cased text: far cheaper than a case-blind regex scan.
_DIGIT_OR_AT = re.compile(r"[0-9@]")
_DIGIT = re.compile(r"[0-9]")
_SECRET_WORDS = ("pass", "pw", "pin", "otp", "code", "cvv", "cvc", "key", "token", "secret",
                 "bearer", "contrase", "senha", "wachtwoord", "kennwort")  # fmt: skip


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# --- 1. e-mail addresses. Starts only at a token start (the look-behind), so a long
# word is scanned once.
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+")

# --- 2. token shapes: a prefix the issuer chose so that scanners find them.
_TOKEN_PREFIXES = ("sk-", "sk_", "pk_", "rk_", "gh", "github_pat_", "glpat-", "hf_", "xox",
                   "AKIA", "ASIA", "ABIA", "ACCA", "AIza", "eyJ", "-----BEGIN")  # fmt: skip
_TOKEN = re.compile(
    r"-----BEGIN [A-Z ]{0,30}PRIVATE KEY-----.*?(?:-----END [A-Z ]{0,30}PRIVATE KEY-----|\Z)"
    r"|(?<![\w-])(?:"
    r"sk-(?:proj-|svcacct-|admin-|ant-[a-z]{0,8}[0-9]{0,3}-)?[A-Za-z0-9_-]{20,}"
    r"|(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{16,}"
    r"|gh[pousr]_[A-Za-z0-9]{30,}"
    r"|github_pat_[A-Za-z0-9_]{30,}"
    r"|glpat-[A-Za-z0-9_-]{20,}"
    r"|hf_[A-Za-z0-9]{30,}"
    r"|xox[abposre]-[A-Za-z0-9-]{10,}"
    r"|(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}"
    r"|AIza[A-Za-z0-9_-]{35}"
    r"|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"
    r")(?![\w-])",
    re.DOTALL,
)
_BEARER = re.compile(r"(?P<keep>\bbearer\s+)(?P<value>[A-Za-z0-9._~+/-]{16,}=*)", re.IGNORECASE)

# --- 3. a credential after its keyword. Three kinds, three rules for the value:
# a code (digits, or a short code with a digit), a password (anything that is not a
# word of the sentence: "my password is too long"), a key (long, letters and digits).
_CREDENTIAL = re.compile(
    r"(?P<keyword>\b(?:"
    r"(?P<code>one[-\s]?time\s+(?:pass(?:word|code)|code|pin)"
    r"|(?:verification|security|login|log-in|sign[-\s]?in|auth(?:entication)?|access|2fa|mfa"
    r"|sms|backup|recovery|unlock|door|alarm|gate|safe|confirmation\s+pin)\s+(?:code|pin)"
    r"|t?otp|cvv2?|cvc2?|pin(?:\s+(?:number|code|no\.?))?|pass\s?code"
    # a bare "code" is a promo code; the one someone sent you is a one-time code
    r"|code(?=\s+(?:that\s+|which\s+)?(?:you|u|they|it)\s+(?:just\s+)?(?:sent|texted|emailed)))"
    r"|(?P<password>pass(?:word|phrase|wd)|pwd|pw|pword|mot\s+de\s+passe|contrase[ñn]a"
    r"|passwort|kennwort|senha|wachtwoord)"
    r"|(?P<key>(?:api|secret|access|private|client|app)[-_\s]?(?:key|token|secret)(?:\s+id)?"
    r"|(?:auth|access|bearer|refresh|session|personal\s+access)\s+token|token"
    r"|aws_secret_access_key)"
    r")\b"
    # "for the portal", "you sent me": words between the keyword and its value
    r"(?:\s+(?:for|on|of)\s+(?:my\s+|the\s+|our\s+|your\s+)?[\w.'\u2019-]+"
    r"(?:\s+(?:account|app|card|login|wifi|router|portal|site))?)?"
    r"(?:\s+(?:that\s+|which\s+)?(?:you|u|they|it|i)\s+(?:just\s+)?"
    r"(?:sent|texted|emailed|gave|got|received)(?:\s+me)?)?"
    r"\s*(?:(?:[:=?]|->|\bis\b|\bwas\b|\bis\s+now\b|\bwill\s+be\b|\bshould\s+be\b|'s|\u2019s"
    r"|\bto\b|\bhas\s+been\s+(?:changed|set)\s+to\b)\s*){0,2})"
    r"(?:(?P<quote>[\"\u201c'\u2018`])(?P<quoted>[^\"\u201c\u201d'\u2018\u2019`\n]{1,128})[\"\u201d'\u2019`]"
    r"|(?P<value>[0-9]{3} [0-9]{3}(?![\w-])|[^\s\"\u201c\u201d\u2018\u2019`]{1,128}))",
    re.IGNORECASE,
)
_LINKED = re.compile(r"[:=>?]|\b(?:is|was|be|now|to)\b|['\u2019]s\b", re.IGNORECASE)
_TRAILING = re.compile(r"[.,;:?)\]}'\"\u2019\u201d]+$")
_TRAILING_CODE = re.compile(r"[^A-Za-z0-9]+$")
_CODE_VALUE = re.compile(r"[0-9]{3,10}|[0-9]{3} [0-9]{3}|(?=[A-Za-z-]*[0-9])[A-Za-z0-9-]{4,12}")
_NOT_A_PASSWORD = _words(
    """
    a an the my your his her our their its this that these those it i me you we they
    not no too very so really still also just now being been be is was are were am
    wrong incorrect correct right invalid valid expired expiring weak strong secure
    insecure safe unsafe long short required needed missing empty blank fine ok okay
    good bad great different same new old case hard easy simple complicated complex
    changed reset locked saved stored encrypted hidden visible written there here on
    in at for to of with without from by and or but if when what which who how why
    because since as about like more less only all any some none nothing something
    anything everything mandatory optional hashed compromised leaked stolen set sent
    protected working accepted rejected unknown known forgotten lost least characters
    digits letters secret private personal mine yours theirs ours one two three four
    five six seven eight nine ten twelve sixteen manager reset recovery field box
    policy rules hint strength change update please thanks asterisks dots stars
    generator requirement requirements somewhere probably definitely already never
    always again either neither else another whatever same-ish longer shorter
    """
)
_WORDY = re.compile(r"[a-z]+(?:ed|ing|ly|s)", re.IGNORECASE)

# --- 4. IBANs: two capital letters, two check digits, then the body: compact, or
# printed in groups of four (the last group shorter). Upper case only: in lower case,
# prose such as "ab12 this is a test" would look like a grouped body.
_IBAN = re.compile(
    r"\b[A-Z]{2}[0-9]{2}(?:[A-Z0-9]{11,30}|(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,3})?)\b"
)

# --- 5. national ids. Where a shape is common (nine digits), the id's own keyword
# must come just before it.
_KEYWORD_WINDOW = 40
# Not a piece of a longer grouped number ("4111 1111 1111 1111" holds twelve digits).
_NUMBER_START = r"(?<![\w+.,/-])(?<![0-9][ -])"
_NUMBER_END = r"(?![\w/-]|[.,][0-9]|[ -][0-9])"
_SSN = re.compile(
    _NUMBER_START + r"(?P<area>[0-9]{3})(?P<sep>[- ]?)(?P<group>[0-9]{2})(?P=sep)"
    r"(?P<serial>[0-9]{4})" + _NUMBER_END
)
_SSN_HINT = re.compile(r"\b(?:ssn|ss#|social\s+security|soc(?:ial|\.)?\s+sec|social)\b", re.I)
_SIN = re.compile(_NUMBER_START + r"[0-9]{3}(?P<sep>[- ]?)[0-9]{3}(?P=sep)[0-9]{3}" + _NUMBER_END)
# "my sin is ..." too: the word is rare before nine digits that pass the Luhn check.
_SIN_HINT = re.compile(
    r"\b(?:[Ss][Ii][Nn]|NAS|S\.I\.N)\b|[Ss]ocial\s+[Ii]nsurance|[Aa]ssurance\s+[Ss]ociale"
)
_AADHAAR = re.compile(
    _NUMBER_START + r"[2-9][0-9]{3}(?P<sep>[- ]?)[0-9]{4}(?P=sep)[0-9]{4}" + _NUMBER_END
)
_AADHAAR_HINT = re.compile(r"\b(?:aadhaa?r|aadhar|uidai|uid)\b", re.IGNORECASE)
# First letter not D F I Q U V, second not D F I O Q U V; some prefixes never issued.
_NINO = re.compile(
    r"\b(?!(?:BG|GB|KN|NK|NT|TN|ZZ))[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]"
    r" ?[0-9]{2} ?[0-9]{2} ?[0-9]{2} ?[A-D]\b",
    re.IGNORECASE,
)
_DNI = re.compile(r"(?<![\w-])(?P<number>[0-9]{8})(?:-?(?P<a>[A-Za-z])| (?P<b>[A-Z]))(?![\w-])")
_NIE = re.compile(
    r"(?<![\w-])(?P<first>[XYZxyz])-?(?P<number>[0-9]{7})-?(?P<letter>[A-Za-z])(?![\w-])"
)
_DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"

# --- 6. payment cards: 13-19 digits, optionally separated by single spaces or dashes.
_CARD = re.compile(r"(?<![\w+.,/:-])[0-9](?:[ -]?[0-9]){12,18}(?![\w/:-]|[.,][0-9])")

# --- 7. digits right after an account keyword ("account number is 12345678",
# "sort code 12-34-56"): redacted even when short.
_KEYWORD_ACCOUNT = re.compile(
    r"(?P<keyword>\b(?:bank\s+)?(?:account|acct|a/c|routing|sort\s*code|bsb)"
    r"(?:\s+(?:number|no\.?|num|nr|#))?(?:\s+ending\s+in)?(?:\s+is)?\s*[:#=]?\s*)"
    r"(?P<number>[0-9](?:[ -]?[0-9]){3,33})(?![\w])",
    re.IGNORECASE,
)

# --- 8. street addresses. A name word is not a word of everyday prose ("5 miles down
# the road", "2 more days this way"), so a quantity is never taken for a house number.
_STREET_TYPES = (
    "street|st|road|rd|avenue|ave|av|lane|ln|boulevard|blvd|drive|dr|court|ct|place|pl"
    "|square|sq|terrace|way|close|crescent|cres|gardens|grove|parkway|pkwy|highway|hwy"
    "|circle|cir|trail|row|mews|walk|hill|alley|plaza|quay|wharf|embankment|esplanade"
)
_NAME_STOP = (
    "the|a|an|of|to|in|on|at|my|your|our|his|her|their|and|or|for|from|with|by|per|each|"
    "every|more|less|most|other|this|that|these|those|down|up|along|across|over|into|"
    "last|next|first|some|all|few|many|new|old|top|best|miles?|km|kilometers?|meters?|"
    "minutes?|mins?|hours?|days?|weeks?|months?|years?|times?|people|kids?|dogs?|cats?|"
    "blocks?|steps?|stops?|floors?|doors?|houses?|is|are|was|were|be|been|i|we|you|it"
)
_NAME_WORD = rf"(?!(?:{_NAME_STOP})\b)(?:[^\W\d_][\w'\u2019.-]*|[0-9]{{1,3}}(?:st|nd|rd|th))"
_ADDRESS = re.compile(
    r"(?<![\w.,/-])(?:(?:flat|apt|apartment|unit|suite)\s*#?\w{1,5},?\s+)?"
    r"[0-9]{1,5}[A-Za-z]?(?:[-/][0-9]{1,5}[A-Za-z]?)?,?\s+"
    r"(?:(?:[NSEW]|north|south|east|west)\.?\s+)?"
    rf"{_NAME_WORD}(?:\s+{_NAME_WORD}){{0,3}}?\s+(?:{_STREET_TYPES})\b"
    r"(?:\.?\s+[NS][EW]?\b)?"
    r"(?:,?\s+(?:apt|apartment|suite|ste|unit|flat|fl|floor|#)\.?\s*#?[0-9]\w{0,4}\b)?",
    re.IGNORECASE,
)
_CAPITAL = r"[A-ZÀ-ÖØ-Þ]"
_ADDRESS_CONTINENTAL = re.compile(
    r"(?<![\w-])(?:"
    # the street type glued to the name: Hauptstraße, Keizersgracht, Storgatan
    + _CAPITAL
    + r"[\w.-]*(?:[Ss]tra(?:ß|ss)e|str\.|[Ww]eg|[Aa]llee|[Pp]latz|[Gg]asse|damm|ufer"
    r"|ring|chaussee|straat|gracht|laan|plein|kade|singel|dijk|steeg|gade|vej|gatan|vägen"
    r"|veien|gata)"
    # the street type first: Calle Mayor, Via Roma, Rua Augusta
    r"|(?:Calle|C/|Avenida|Avda\.?|Paseo|Plaza|Carrer|Rua|Via|Viale|Piazza|Corso|Largo"
    r"|Rambla)\s+(?:(?:de|del|la|las|los|da|do|dos|das|di|della|dei|delle|dello)\s+|d['\u2019])*"
    + _CAPITAL
    + r"[\w'\u2019-]*(?:\s+(?:(?:de|del|la|di|della)\s+)?"
    + _CAPITAL
    + r"[\w'\u2019-]*){0,3}"
    r"),?\s*(?:n[º°o]\.?\s*)?[0-9]{1,4}[a-zA-Z]?(?![\w-])"
    r"(?!\s*(?:days?|hours?|items?|x\b|%|gb|tb|kg|km|minutes?|mins?|weeks?|months?|years?))"
    # the number first, the street type after it: 12 rue de Rivoli, 3 avenue des Ternes
    r"|(?<![\w.,/-])[0-9]{1,4}(?:\s?(?:bis|ter))?,?\s+(?i:rue|avenue|av\.|boulevard|bd|place"
    r"|allée|chemin|impasse|quai|cours|route)\s+(?:(?:de|du|des|la|le|les)\s+|[ld]['\u2019])*"
    + _CAPITAL
    + r"[\w'\u2019-]*(?:\s+(?:(?:de|du|des|la|le|les)\s+|[ld]['\u2019])*"
    + _CAPITAL
    + r"[\w'\u2019-]*){0,3}"
    r"|\b(?i:p\.?\s?o\.?\s?box|post\s+office\s+box)\s+[0-9]{1,6}\b"
)

# --- 9. postcodes. UK and Canadian shapes as printed (upper case); a bare number only
# where it can be nothing else: after a US state, after its keyword, after an address.
_UK_POSTCODE = r"(?:[A-PR-UWYZ][A-HK-Y]?[0-9][A-HJKPSTUW0-9]?) ?[0-9][ABD-HJLNP-UW-Z]{2}"
_CA_POSTCODE = r"[ABCEGHJ-NPRSTVXY][0-9][ABCEGHJ-NPRSTV-Z] ?[0-9][ABCEGHJ-NPRSTV-Z][0-9]"
_POSTCODE_SHAPE = re.compile(rf"(?<![\w-])(?:{_UK_POSTCODE}|{_CA_POSTCODE})(?![\w-])")
_STORAGE = re.compile(r"[0-9](?:GB|TB|MB)")  # "PS5 2TB", "M2 8GB": sizes, not postcodes
_US_STATE_ZIP = re.compile(
    r"(?P<keep>\b(?:AL|AK|AZ|AR|CA|CO|CT|DE|DC|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN"
    r"|MS|MO|MT|NE|NV|NH|NJ|NM|NY|NC|ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY)"
    r",?\s+)(?P<code>[0-9]{5}(?:-[0-9]{4})?)(?![\w-])"
)
_ANY_POSTCODE = (
    rf"[0-9]{{5}}(?:-[0-9]{{4}})?|[1-9][0-9]{{3}} ?[A-Za-z]{{2}}|[0-9]{{4}}"
    rf"|(?i:{_UK_POSTCODE}|{_CA_POSTCODE})"
)
_KEYWORD_POSTCODE = re.compile(
    r"(?P<keep>\b(?:post\s?code|postal\s+code|zip(?:\s?code)?|plz|code\s+postal"
    r"|c[óo]digo\s+postal)(?:\s+(?:is|was))?\s*[:#]?\s*)"
    rf"(?P<code>{_ANY_POSTCODE})(?![\w-])",
    re.IGNORECASE,
)
_AFTER_ADDRESS_POSTCODE = re.compile(
    r"(?P<keep>\[address\](?:,?\s+"
    + _CAPITAL
    + r"[\w'\u2019.-]*(?:\s+"
    + _CAPITAL
    + r"[\w'\u2019.-]*){0,2})?,?\s+(?:[A-Z]{2},?\s+)?)"
    rf"(?P<code>{_ANY_POSTCODE})(?![\w-])"
)

# --- 10. phone shapes: international (+CC ...), an (area) code, a national number with
# a leading 0, or 2+ groups sharing one separator ("555-123-4567", "06 12 34 56 78").
_PHONE = re.compile(
    r"(?<![\w+/.,:-])"
    r"(?:\+[0-9]{1,3}(?:[ .-]?\(?[0-9]{1,4}\)?)(?:[ .-]?[0-9]{2,5}){1,5}"
    r"|\(0?[0-9]{1,4}\)[ .-]?[0-9]{2,5}(?:[ .-]?[0-9]{2,5}){0,3}"
    r"|0[0-9]{9,10}|0[0-9]{4} [0-9]{6}"
    r"|[0-9]{1,5}(?P<sep>[ .-])[0-9]{2,5}(?:(?P=sep)[0-9]{2,5}){0,4})"
    r"(?![\w/:-]|[.,][0-9])"
)

# --- 11. any digit run, grouped by one kind of separator (space or dash).
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
# A number that names a thing, not a person: "order number 12345678", "SKU 100-200-33".
_THING_BEFORE = re.compile(
    r"\b(?:order|invoice|ticket|tracking|sku|part|model|item|case|booking|flight|isbn"
    r"|serial|version|build)(?:\s+(?:number|no\.?|num|nr|id|#))?(?:\s+is)?\s*[:#=]?\s*$",
    re.IGNORECASE,
)
_NOT_DIGIT = re.compile(r"[^0-9]")


def redact(text: str) -> str:
    """Return ``text`` with identifiers, secrets and addresses replaced by placeholders."""
    low = text.lower()
    secret_words = any(word in low for word in _SECRET_WORDS)
    if not (secret_words or _DIGIT_OR_AT.search(text) or "eyJ" in text or "-----" in text):
        return text  # the common case: nothing to look at
    if "@" in text:
        text = _EMAIL.sub(EMAIL, text)
    if any(prefix in text for prefix in _TOKEN_PREFIXES):
        text = _TOKEN.sub(_token, text)
    if secret_words:  # step 3 looks only where one of its keywords is
        text = _BEARER.sub(_bearer, text)
        text = _CREDENTIAL.sub(_credential, text)
    digits = len(_DIGIT.findall(text))
    if not digits:
        return text  # everything below has a digit in it
    if digits >= 4:  # the fewest an identifier has ("acct 1234")
        text = _numbers(text)
    text = _ADDRESS.sub(ADDRESS, text)
    text = _ADDRESS_CONTINENTAL.sub(ADDRESS, text)
    text = _POSTCODE_SHAPE.sub(_postcode_shape, text)
    text = _US_STATE_ZIP.sub(_keep_then(POSTCODE), text)
    text = _KEYWORD_POSTCODE.sub(_keep_then(POSTCODE), text)
    if ADDRESS in text:
        text = _AFTER_ADDRESS_POSTCODE.sub(_keep_then(POSTCODE), text)
    if digits >= 7:  # the fewest a phone number has
        text = _PHONE.sub(_phone, text)
        text = _DIGIT_RUN.sub(_long_run, text)
    return text


def _numbers(text: str) -> str:
    """Steps 4-7: identifiers made of digits (and a few letters)."""
    text = _IBAN.sub(_iban, text)
    text = _SSN.sub(_ssn, text)
    if _SIN_HINT.search(text):
        text = _SIN.sub(_sin, text)
    text = _AADHAAR.sub(_aadhaar, text)
    text = _NINO.sub(NINO, text)
    text = _DNI.sub(_dni, text)
    text = _NIE.sub(_nie, text)
    text = _CARD.sub(_card, text)
    return _KEYWORD_ACCOUNT.sub(_keyword_account, text)


def _digits(s: str) -> str:
    return _NOT_DIGIT.sub("", s)


def _keep_then(placeholder: str) -> Callable[[re.Match[str]], str]:
    """A replacement that keeps the match's ``keep`` group (a keyword, a state)."""

    def replace(m: re.Match[str]) -> str:
        return m.group("keep") + placeholder

    return replace


def _before(m: re.Match[str], window: int = _KEYWORD_WINDOW) -> str:
    return m.string[max(0, m.start() - window) : m.start()]


# --- 2, 3


def _token(m: re.Match[str]) -> str:
    s = m.group()
    if s.startswith(("-----", "eyJ", "AKIA", "ASIA", "ABIA", "ACCA")):
        return TOKEN
    # "sk-this-is-a-placeholder" names no key; every issued one has digits in it
    return TOKEN if any(ch.isdigit() for ch in s) else s


def _bearer(m: re.Match[str]) -> str:
    value = m.group("value")
    if any(ch.isdigit() for ch in value) and any(ch.isalpha() for ch in value):
        return m.group("keep") + TOKEN
    return m.group()


def _credential(m: re.Match[str]) -> str:
    whole = m.group()
    kind = next(g for g in ("code", "password", "key") if m.group(g) is not None)
    if m.group("quoted") is not None:
        value, start, linked = m.group("quoted"), m.start("quoted"), True
    else:
        value, start = m.group("value"), m.start("value")
        # a code is letters and digits: "4512#" is the code and the key to press
        value = (_TRAILING_CODE if kind == "code" else _TRAILING).sub("", value) or value
        linked = _LINKED.search(m.string[m.end(kind) : start]) is not None
    if value.startswith("["):  # already a placeholder (a token shape, an e-mail)
        return whole
    if kind == "code":
        placeholder = SECRET if _CODE_VALUE.fullmatch(value) else None
    elif kind == "password":
        placeholder = SECRET if _password_like(value, linked) else None
    else:
        placeholder = TOKEN if _key_like(value) else None
    if placeholder is None:
        return whole
    offset = start - m.start()
    return whole[:offset] + placeholder + whole[offset + len(value) :]


def _password_like(value: str, linked: bool) -> bool:
    if len(value) < 4 or value.lower() in _NOT_A_PASSWORD:
        return False
    if value.isalpha():
        if _WORDY.fullmatch(value) and value.islower():
            return False  # "expired", "changing", "really": the sentence goes on
        # a bare word is a password only when said to be one ("my password is sunflower")
        return linked
    return True


def _key_like(value: str) -> bool:
    return (
        len(value) >= 12 and any(ch.isdigit() for ch in value) and any(ch.isalpha() for ch in value)
    )


# --- 4


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


# --- 5


def _ssn(m: re.Match[str]) -> str:
    area, group, serial = m.group("area"), m.group("group"), m.group("serial")
    if area in {"000", "666"} or area[0] == "9" or group == "00" or serial == "0000":
        return m.group()  # never issued: a phone or an account number (steps 10, 11)
    if m.group("sep") == "-" or _SSN_HINT.search(_before(m)):
        return SSN
    return m.group()


def _sin(m: re.Match[str]) -> str:
    digits = _digits(m.group())
    if digits[0] in "08" or not _luhn_ok(digits) or not _SIN_HINT.search(_before(m)):
        return m.group()
    return SIN


def _aadhaar(m: re.Match[str]) -> str:
    if not _verhoeff_ok(_digits(m.group())):
        return m.group()
    if m.group("sep") or _AADHAAR_HINT.search(_before(m)):
        return AADHAAR
    return m.group()


def _dni(m: re.Match[str]) -> str:
    letter = (m.group("a") or m.group("b")).upper()
    return DNI if _DNI_LETTERS[int(m.group("number")) % 23] == letter else m.group()


def _nie(m: re.Match[str]) -> str:
    number = str("XYZ".index(m.group("first").upper())) + m.group("number")
    return NIE if _DNI_LETTERS[int(number) % 23] == m.group("letter").upper() else m.group()


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


# Verhoeff's dihedral group: multiplication, permutation (the Aadhaar check digit).
_VERHOEFF_D = (
    "0123456789", "1234067895", "2340178956", "3401289567", "4012395678", "5987604321",
    "6598710432", "7659821043", "8765932104", "9876543210",
)  # fmt: skip
_VERHOEFF_P = (
    "0123456789", "1576283094", "5803796142", "8916043527", "9453126870", "4286573901",
    "2793806415", "7046913258",
)  # fmt: skip


def _verhoeff_ok(digits: str) -> bool:
    c = 0
    for i, ch in enumerate(reversed(digits)):
        c = int(_VERHOEFF_D[c][int(_VERHOEFF_P[i % 8][int(ch)])])
    return c == 0


# --- 6, 7


def _isbn13_ok(digits: str) -> bool:
    if len(digits) != 13 or not digits.startswith(("978", "979")):
        return False
    total = sum(int(ch) * (3 if i % 2 else 1) for i, ch in enumerate(digits))
    return total % 10 == 0


def _card(m: re.Match[str]) -> str:
    digits = _digits(m.group())
    if _isbn13_ok(digits) or not _luhn_ok(digits):
        return m.group()  # not a card; step 11 still hides it when it is long
    return CARD


def _keyword_account(m: re.Match[str]) -> str:
    return m.group("keyword") + ACCOUNT


# --- 9


def _postcode_shape(m: re.Match[str]) -> str:
    s = m.group()
    if " " not in s or _STORAGE.search(s):
        return s  # "NW16XE" or "PS5 2TB": only after a keyword or an address (below)
    return POSTCODE


# --- 10, 11


def _not_an_identifier(m: re.Match[str]) -> bool:
    """Dates, years, prices, ISBNs and numbers of things look like digit runs but
    identify nobody."""
    s = m.group()
    if _DATE.fullmatch(s) or _YEARS.fullmatch(s) or _isbn13_ok(_digits(s)):
        return True
    if _THING_BEFORE.search(_before(m)):
        return True
    after_currency = m.start() > 0 and m.string[m.start() - 1] in "$€£¥"
    return after_currency or _PRICE_AFTER.match(m.string, m.end()) is not None


def _phone(m: re.Match[str]) -> str:
    s = m.group()
    n = len(_digits(s))
    if not 7 <= n <= 15 or _not_an_identifier(m):
        return s
    # Grouped digits with no +, ( or leading 0 are a phone only when short enough
    # to be one; 12+ of them read as an account number (step 11).
    if s[0] not in "+(0" and n > 11:
        return s
    return PHONE


def _long_run(m: re.Match[str]) -> str:
    s = m.group()
    if len(_digits(s)) < 8 or _not_an_identifier(m):
        return s
    return ACCOUNT
