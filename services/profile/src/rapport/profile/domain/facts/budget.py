"""Budget facts: the one kind of fact a request states.

"headphones under 50 euros", "anything under $100?": a bound with a currency counts in
a request or a request question, but not in a price description ("it costs under 50")
or a question about an item's price ("is this under 50 euros?"). Besides "my budget is
80", "$1,200 max", "I can't go over $50", and the bounds of the other languages we
serve ("bis zu 50 Euro").

Amounts under a banking or credit-card intent (``balance``, ``credit_limit``,
``transfer``, ...) are balances and limits, not a spending budget: only a budget named
as one counts there.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation

from rapport.profile.domain.facts.assertion import Assertion
from rapport.profile.domain.facts.clauses import ADV, HYPOTHETICAL, SUBJECT, Clause

# Banking and credit-card intents: their amounts are balances and limits (see budget_facts).
_MONEY_INTENTS = frozenset(
    {
        "balance", "bill_balance", "bill_due", "credit_limit", "credit_limit_change",
        "min_payment", "pay_bill", "transactions", "spending_history", "income",
        "interest_rate", "transfer", "exchange_rate", "taxes", "rewards_balance", "apr",
        "redeem_rewards", "direct_deposit", "payday", "rollover_401k", "w2",
        "credit_score", "improve_credit_score", "international_fees",
    }
)  # fmt: skip

_CURRENCIES = {
    "$": "USD", "usd": "USD", "dollar": "USD", "dollars": "USD", "bucks": "USD",
    "€": "EUR", "eur": "EUR", "euro": "EUR", "euros": "EUR", "£": "GBP", "gbp": "GBP",
    "pound": "GBP", "pounds": "GBP", "quid": "GBP", "¥": "JPY", "yen": "JPY", "jpy": "JPY",
    "chf": "CHF", "franc": "CHF", "francs": "CHF", "cad": "CAD", "aud": "AUD",
    "inr": "INR", "rupee": "INR", "rupees": "INR", "r$": "BRL", "brl": "BRL", "reais": "BRL",
}  # fmt: skip
_CURRENCY_BEFORE = r"r\$|[$€£¥]|usd|eur|gbp|chf|cad|aud|inr|brl"
_CURRENCY_AFTER = (
    r"[$€£¥]|usd|eur|euros?|gbp|dollars?|bucks|pounds?|quid|chf|francs?|yen|jpy|cad|aud|inr"
    r"|rupees?|brl|reais"
)
_NUM = r"\d+(?:[.,]\d+)*"


def _amount(tag: str) -> str:
    """An amount with its currency before or after; groups are suffixed with ``tag``."""
    return (
        rf"(?<![\w.,])(?:(?P<cb{tag}>{_CURRENCY_BEFORE})\s?(?P<nb{tag}>{_NUM})(?P<kb{tag}>k)?"
        rf"|(?P<na{tag}>{_NUM})(?P<ka{tag}>k)?(?:\s?(?P<ca{tag}>{_CURRENCY_AFTER}))?)"
        r"(?![\w%]|[.,]\d)"
    )


# "my budget is 80", "budget: 50€", "Mein Budget liegt bei maximal 200 Euro": a budget
# word and an amount within a few words.
_BUDGET_IS = re.compile(
    r"\b(?:budget|presupuesto|orçamento|orcamento)\b(?:'s)?[^\d$€£¥.!?;]{0,25}?" + _amount("1")
)
# "my limit is 3000 CHF", "my absolute max is $500"
_MY_LIMIT = re.compile(
    r"\b(?:my|our)\s+(?:(?:absolute|total|upper|hard|spending|price|max)\s+)?(?:limit|max(?:imum)?"
    r"|ceiling|cap)\s+(?:is\s+|of\s+|would\s+be\s+|=\s*|:\s*)(?:around\s+|about\s+)?" + _amount("1")
)
_AMOUNT_MAX = re.compile(
    _amount("1") + r"\s*(?:is\s+)?(?:my\s+|our\s+|the\s+)?(?:(?:absolute|total|upper|hard|real"
    r"|spending|price|overall)\s+)?(?:budget|max|maximum|limit|tops|at\s+most"
    r"|at\s+the\s+most|or\s+less|or\s+under|or\s+below|or\s+cheaper|upper\s+limit|ceiling)\b"
)
_SPEND = re.compile(
    r"(?:" + SUBJECT + ADV + r"|^|\b(?:looking|want|wanting|trying|hoping|planning|willing"
    r"|able)\s+to\s+)(?:(?P<modal>can\s+only|can|could|am\s+able\s+to|am\s+willing\s+to"
    r"|are\s+willing\s+to|would\s+like\s+to|want\s+to|would|plan\s+to|am\s+planning\s+to"
    r"|am\s+looking\s+to|am\s+trying\s+to|only\s+want\s+to)\s+)?(?:(?P<negmodal>do\s+not\s+want"
    r"\s+to|do\s+not|cannot|can\s+not|will\s+not|would\s+not|would\s+rather\s+not|am\s+not"
    r"|refuse\s+to|am\s+not\s+willing\s+to)\s+)?" + ADV + r"(?P<verb>spend|pay|afford|go|shell"
    r"\s+out|splash\s+out)\s+(?:(?P<bound>up\s+to|no\s+more\s+than|not\s+more\s+than|at\s+most"
    r"|max(?:imum)?|a\s+max(?:imum)?\s+of|less\s+than|under|below|around|about|roughly|over"
    r"|more\s+than|above|beyond)\s+)?" + _amount("1")
)
_UNDER = re.compile(
    r"\b(?:under|below|less\s+than|no\s+more\s+than|not\s+more\s+than|at\s+most|max(?:imum)?"
    r"(?:\s+of)?|up\s+to|within|cheaper\s+than|not\s+over|not\s+above|nothing\s+over|nothing"
    r"\s+above|nothing\s+more\s+than|no\s+higher\s+than|lower\s+than|not\s+exceeding"
    # the same bounds in the other languages we serve (fr, de, es, it, pt, nl)
    r"|moins\s+de|pas\s+plus\s+de|jusqu'à|unter|bis\s+zu|höchstens|maximal|nicht\s+mehr\s+als"
    r"|menos\s+de|hasta|como\s+máximo|no\s+más\s+de|(?:no|nunca)\s+gasto\s+más\s+de|meno\s+di"
    r"|fino\s+a|al\s+massimo|non\s+più\s+di|até|no\s+máximo|não\s+mais\s+de|minder\s+dan"
    r"|maximaal|hoogstens)\s+" + _amount("1")
)
# A message that is only an amount answers "what's your budget?": "50 bucks", "around £30".
_AMOUNT_ONLY = re.compile(
    r"^(?:about|around|roughly|approx(?:imately)?|maybe|like|max(?:imum)?|up\s+to|under)?\s*"
    + _amount("1")
    + r"\s*(?:max|tops|or\s+so|or\s+less|ish)?\s*[.!]*$"
)
_TO_SPEND = re.compile(
    r"\b(?:i|we)\s+(?:only\s+|just\s+)?(?:have|have\s+got|got)\s+(?:about\s+|around\s+"
    r"|roughly\s+|up\s+to\s+|only\s+|just\s+)?" + _amount("1") + r"\s+(?:to\s+spend"
    r"|to\s+play\s+with)\b"
)
_BETWEEN = re.compile(r"\bbetween\s+" + _amount("1") + r"\s+and\s+" + _amount("2"))
_NOT_MONEY_UNIT = re.compile(
    r"\s*(?:%|kg|g|grams?|lbs?|km|miles?|mi|m|cm|mm|inch(?:es)?|minutes?|mins?|hours?|hrs?"
    r"|days?|weeks?|months?|years?|pages?|people|persons?|guests?|players?|calories|kcal"
    r"|watts?|w|gb|tb|mb|mp|hz|items?|pieces?|pcs|x|times|stars?|degrees?)\b"
)
_MONEY_CONTEXT = re.compile(r"\b(?:budget|spend|spending|afford|pay|paying|price|money)\b")
_PRICE_DESCRIPTION = re.compile(
    r"\b(?:costs?|costing|priced|paid|bought|sold|sells|selling|spent|was|were|is\s+it|is\s+this"
    r"|is\s+that|it\s+is|this\s+is|that\s+is|it\s+was|on\s+sale|discount|earn|earns|earned"
    r"|make|makes|made|salary|income|rent|owe|owes|saved)\b"
)
_DESCRIBED_BEFORE = re.compile(r"\b(?:is|are|was|were|costs?|priced|sells\s+for)\s+$")
_HIGHER_BOUND = frozenset({"over", "more than", "above", "beyond"})


def _money(m: re.Match[str], tag: str) -> tuple[str, str | None] | None:
    """(plain amount, ISO currency or None) for one ``_amount`` match; None if not money."""
    num = m.group(f"nb{tag}") or m.group(f"na{tag}")
    cur = m.group(f"cb{tag}") or m.group(f"ca{tag}")
    kilo = m.group(f"kb{tag}") or m.group(f"ka{tag}")
    if num is None:
        return None
    if cur is None and not kilo and _NOT_MONEY_UNIT.match(m.string, m.end()):
        return None
    value = _number(num)
    if value is None or value <= 0:
        return None
    if kilo:
        value *= 1000
    text = str(int(value)) if value == value.to_integral_value() else format(value.normalize(), "f")
    return text, _CURRENCIES[cur] if cur else None


def _number(raw: str) -> Decimal | None:
    """'1,200' and '1.200' are thousands; '49.99' and '49,99' decimals; else None."""
    parts = re.split(r"[.,]", raw)
    try:
        if len(parts) == 1:
            return Decimal(raw)
        if 1 <= len(parts[0]) <= 3 and all(len(p) == 3 for p in parts[1:]):
            return Decimal("".join(parts))
        if len(parts[-1]) in (1, 2) and all(len(p) == 3 for p in parts[1:-1]):
            return Decimal("".join(parts[:-1]) + "." + parts[-1])
    except InvalidOperation:
        return None
    return None


def _budget_value(money: tuple[str, str | None]) -> str:
    """'50 EUR', or the bare amount when no currency was given."""
    amount, currency = money
    return f"{amount} {currency}" if currency else amount


def budget_facts(c: Clause, intent: str | None) -> Iterator[Assertion]:
    money_context = bool(_MONEY_CONTEXT.search(c.low))
    if intent in _MONEY_INTENTS:
        # Amounts in a banking request are transfers, balances and credit limits, not a
        # budget; only a budget the user names as one counts ("my budget is 50 euros").
        if not c.question:
            yield from _stated_budget_facts(c, money_context, named_only=True)
        return
    if not c.question:
        yield from _stated_budget_facts(c, money_context)
        yield from _spend_facts(c)
    elif not c.request_question:
        return
    yield from _bound_facts(c, money_context)


def _stated_budget_facts(
    c: Clause, money_context: bool, *, named_only: bool = False
) -> Iterator[Assertion]:
    """'my budget is 80', '$1,200 max', '50 bucks' (an answer), 'I have 2k to spend'."""
    patterns = (
        (_BUDGET_IS,)
        if named_only
        else (_BUDGET_IS, _MY_LIMIT, _AMOUNT_MAX, _AMOUNT_ONLY, _TO_SPEND)
    )
    for pattern in patterns:
        for m in pattern.finditer(c.low):
            before = c.low[: m.start()]
            if HYPOTHETICAL.search(before):
                continue
            if pattern is _BUDGET_IS and _someone_elses(before):
                continue  # "my sister's budget is 50"
            money = _money(m, "1")
            named = pattern is not _AMOUNT_MAX and pattern is not _AMOUNT_ONLY
            if money and (money[1] or named or money_context):
                # "Forget the 50 euro limit": a budget withdrawn
                yield Assertion("budget", _budget_value(money), bool(_WITHDRAWN.search(before)))


_WITHDRAWN = re.compile(r"\b(?:forget|scrap|ignore|never\s+mind|disregard|drop)\b")


def _someone_elses(before: str) -> bool:
    """'my sister's budget', 'her total budget': the last two words name another owner."""
    return any(w.endswith("'s") or w in _OTHER_OWNERS for w in before.split()[-2:])


_OTHER_OWNERS = frozenset({"his", "her", "their", "your"})


def _bound_facts(c: Clause, money_context: bool) -> Iterator[Assertion]:
    """'headphones under 50 euros', 'between 50 and 100 euros' (requests included)."""
    if _PRICE_DESCRIPTION.search(c.low) or HYPOTHETICAL.search(c.low):
        return  # "it costs under 50 euros", "if it were under 50"
    for m in _UNDER.finditer(c.low):
        if _DESCRIBED_BEFORE.search(c.low, 0, m.start()):
            continue  # "the cheapest is under 20 dollars"
        money = _money(m, "1")
        if money and (money[1] or money_context):
            yield Assertion("budget", _budget_value(money))
    for m in _BETWEEN.finditer(c.low):
        low, high = _money(m, "1"), _money(m, "2")
        if low and high and (low[1] or high[1] or money_context):
            yield Assertion("budget", _budget_value((high[0], high[1] or low[1])))


def _spend_facts(c: Clause) -> Iterator[Assertion]:
    """'I can spend up to 100', 'I can't go over $50', 'I don't want to pay more than 30'."""
    for m in _SPEND.finditer(c.low):
        if HYPOTHETICAL.search(c.low[: m.start()]):
            continue
        if not _SUBJECT_START.match(m.group()) and _THIRD_PARTY_START.match(c.low):
            continue  # "my sister can spend 50"
        bound = re.sub(r"\s+", " ", m.group("bound") or "")
        refusing = bool(m.group("negmodal"))
        if refusing != (bound in _HIGHER_BOUND):
            continue  # "I want to spend more than 50", "I can't afford 200": no upper bound
        if not refusing and not (bound or m.group("modal")):
            continue  # "I spend 50 a month on books": a habit, not a limit
        if m.group("verb") == "go" and not refusing:
            continue  # "go" only bounds in "can't go over"
        money = _money(m, "1")
        if money:
            yield Assertion("budget", _budget_value(money))


_SUBJECT_START = re.compile(SUBJECT)
_THIRD_PARTY_START = re.compile(r"(?:my|our|his|her|their)\s+(?!budget)\w+|he\b|she\b|they\b")


def one_budget(found: list[Assertion]) -> list[Assertion]:
    """One message states one budget: the last bound stated (a correction comes later),
    besides any it withdraws ("forget the 50 euro limit, I can spend up to 80")."""
    budgets = [a for a in found if a.type == "budget" and not a.negated]
    if len(budgets) < 2:
        return found
    return [a for a in found if a.type != "budget" or a.negated or a is budgets[-1]]
