"""Fact extraction from chat messages: what the speaker states about themselves, now."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from rapport.common.contracts import FACT_TYPES
from rapport.profile.adapters.language import DETECTED_LANGUAGES, LanguageDetector
from rapport.profile.domain.facts import Assertion, extract
from rapport.profile.domain.pii import PLACEHOLDERS, redact

pytestmark = pytest.mark.unit

Fact = tuple[str, str, bool]
DETECT = LanguageDetector().detect  # the model loads on the first detection


def facts(text: str, intent: str | None = None) -> set[Fact]:
    """Every assertion but the language, as (type, value, negated)."""
    return {
        (a.type, a.value, a.negated)
        for a in extract(text, intent=intent, detect_language=DETECT)
        if a.type != "language"
    }


def language(text: str, intent: str | None = None) -> str | None:
    found = [
        a.value
        for a in extract(text, intent=intent, detect_language=DETECT)
        if a.type == "language"
    ]
    assert len(found) <= 1, "one language per message"
    return found[0] if found else None


def test_assertion_is_a_frozen_value_with_a_default_polarity() -> None:
    a = Assertion("diet", "vegan")
    assert a == Assertion("diet", "vegan", negated=False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.value = "vegetarian"  # type: ignore[misc]
    assert not hasattr(a, "__dict__"), "slots"


# --------------------------------------------------------------------- each type


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # diet: normalised to one of ten values
        ("I'm veggie", {("diet", "vegetarian", False)}),
        ("I eat plant-based", {("diet", "vegan", False)}),
        ("I don't eat meat", {("diet", "vegetarian", False)}),
        ("I don't eat any animal products", {("diet", "vegan", False)}),
        ("I keep kosher", {("diet", "kosher", False)}),
        ("I only eat halal", {("diet", "halal", False)}),
        ("I'm a pescatarian", {("diet", "pescatarian", False)}),
        ("I've been vegan for 5 years", {("diet", "vegan", False)}),
        ("I'm on a keto diet", {("diet", "keto", False)}),
        ("we're both low carb", {("diet", "low-carb", False)}),
        (
            "I'm vegetarian and gluten-free",
            {("diet", "vegetarian", False), ("diet", "gluten-free", False)},
        ),
        ("I'm dairy free and paleo", {("diet", "dairy-free", False), ("diet", "paleo", False)}),
        ("As a vegan, I need good protein sources", {("diet", "vegan", False)}),
        # allergy: the allergen, a lowercase noun
        ("I have a peanut allergy", {("allergy", "peanuts", False)}),
        ("I'm allergic to peanut", {("allergy", "peanuts", False)}),
        (
            "I'm allergic to tree nuts, shellfish and eggs",
            {
                ("allergy", "tree nuts", False),
                ("allergy", "shellfish", False),
                ("allergy", "eggs", False),
            },
        ),
        ("I'm lactose intolerant", {("allergy", "lactose", False)}),
        ("I'm celiac", {("allergy", "gluten", False)}),
        ("I'm severely allergic to penicillin", {("allergy", "penicillin", False)}),
        ("I'm so allergic to cats", {("allergy", "cats", False)}),
        ("I can't eat sesame", {("allergy", "sesame", False)}),
        ("I'm allergic to mango", {("allergy", "mango", False)}),
        # budget: an upper bound, "<amount> <ISO currency>"
        ("I'm looking for headphones under 50 euros", {("budget", "50 EUR", False)}),
        ("$1,200 max", {("budget", "1200 USD", False)}),
        ("50 bucks", {("budget", "50 USD", False)}),
        ("£30", {("budget", "30 GBP", False)}),
        ("my budget is 80", {("budget", "80", False)}),
        ("my budget is €49.90", {("budget", "49.9 EUR", False)}),
        ("my budget is 50.00 dollars", {("budget", "50 USD", False)}),
        ("I can spend up to 100", {("budget", "100", False)}),
        ("I can't go over $50", {("budget", "50 USD", False)}),
        ("I don't want to pay more than 30 euros", {("budget", "30 EUR", False)}),
        ("I'd like to keep it under 100 euros", {("budget", "100 EUR", False)}),
        ("I have about 2k to spend", {("budget", "2000", False)}),
        ("between 50 and 100 euros please", {("budget", "100 EUR", False)}),
        ("can you recommend a laptop under $1000?", {("budget", "1000 USD", False)}),
        # location: where the speaker lives now, title-cased as written
        ("I live in berlin", {("location", "Berlin", False)}),
        ("I'm based in New York", {("location", "New York", False)}),
        ("I just moved to Lyon", {("location", "Lyon", False)}),
        ("I'm from Madrid", {("location", "Madrid", False)}),
        ("we live in rio de janeiro", {("location", "Rio de Janeiro", False)}),
        ("I live in the UK", {("location", "UK", False)}),
        ("I moved from Paris to Lyon", {("location", "Paris", True), ("location", "Lyon", False)}),
        ("I'm originally from Madrid but I live in Berlin", {("location", "Berlin", False)}),
        # household: lowercase, numbers as digits, no article or possessive
        ("I have two kids", {("household", "2 kids", False)}),
        ("I live with my wife", {("household", "wife", False)}),
        ("we have a cat", {("household", "cat", False)}),
        ("I have one son", {("household", "son", False)}),
        ("I'm a mom of three", {("household", "3 kids", False)}),
        ("I live with 2 roommates", {("household", "2 roommates", False)}),
        (
            "we have two dogs, a cat and a parrot",
            {
                ("household", "2 dogs", False),
                ("household", "cat", False),
                ("household", "parrot", False),
            },
        ),
        (
            "I live in Berlin with my wife and two kids",
            {
                ("location", "Berlin", False),
                ("household", "wife", False),
                ("household", "2 kids", False),
            },
        ),
        # owns: a bounded lowercase noun phrase
        ("I already have the first book", {("owns", "first book", False)}),
        ("I own an iPhone 15", {("owns", "iphone 15", False)}),
        ("I bought a kindle last year", {("owns", "kindle", False)}),
        ("I have a ps5 and a switch", {("owns", "ps5", False), ("owns", "switch", False)}),
        ("I own all the Harry Potter books", {("owns", "harry potter books", False)}),
        # likes / dislikes
        ("I love sci-fi", {("likes", "sci-fi", False)}),
        ("I'm a big fan of thrillers", {("likes", "thrillers", False)}),
        ("I love sci-fi and fantasy", {("likes", "sci-fi", False), ("likes", "fantasy", False)}),
        ("I love watching horror movies", {("likes", "horror movies", False)}),
        ("my favourite genre is fantasy", {("likes", "fantasy", False)}),
        ("I love Stephen King", {("likes", "stephen king", False)}),
        ("I hate horror", {("dislikes", "horror", False)}),
        ("I can't stand spicy food", {("dislikes", "spicy food", False)}),
        ("I don't like horror", {("dislikes", "horror", False)}),
        ("not a fan of romance", {("dislikes", "romance", False)}),
        ("I'm not into musicals", {("dislikes", "musicals", False)}),
    ],
)
def test_each_fact_type(text: str, expected: set[Fact]) -> None:
    assert facts(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # chat leaves the subject out: the clause's start, or after a comma or "and"
        # in a clause whose subject is the speaker
        ("allergic to shellfish", {("allergy", "shellfish", False)}),
        ("been vegan for years", {("diet", "vegan", False)}),
        ("strictly vegetarian since 2019", {("diet", "vegetarian", False)}),
        ("big fan of jazz", {("likes", "jazz", False)}),
        ("really into k-pop rn", {("likes", "k-pop", False)}),
        ("already own a kindle", {("owns", "kindle", False)}),
        ("just moved to Porto", {("location", "Porto", False)}),
        (
            "I'm vegetarian and allergic to soy",
            {("diet", "vegetarian", False), ("allergy", "soy", False)},
        ),
        (
            "I'm a student, love chess, hate techno",
            {("likes", "chess", False), ("dislikes", "techno", False)},
        ),
        ("Ok, love board games", {("likes", "board games", False)}),
        # other ways of saying it
        ("my limit is 300 CHF", {("budget", "300 CHF", False)}),
        ("€500 is my absolute max", {("budget", "500 EUR", False)}),
        (
            "Forget the 50 euro limit, I can spend up to 80 euros now",
            {("budget", "50 EUR", True), ("budget", "80 EUR", False)},
        ),
        ("Pizza is my favourite food", {("likes", "pizza", False)}),
        ("I'm a huge jazz fan", {("likes", "jazz", False)}),
        ("I loved anime as a kid and still do", {("likes", "anime", False)}),
        ("I'm no longer a fan of horror", {("likes", "horror", True)}),
        ("Olives are disgusting to me", {("dislikes", "olives", False)}),
        ("I find museums boring", {("dislikes", "museums", False)}),
        ("No onions for me", {("dislikes", "onions", False)}),
        ("I'm sick of reality shows", {("dislikes", "reality shows", False)}),
        ("I used to hate opera", {("dislikes", "opera", True)}),
        ("home is Lisbon", {("location", "Lisbon", False)}),
        ("I'm not based in Oslo any longer", {("location", "Oslo", True)}),
        (
            "We live in Oslo and have two cats",
            {("location", "Oslo", False), ("household", "2 cats", False)},
        ),
        ("My partner and I share a flat", {("household", "partner", False)}),
        ("My dad lives with us now", {("household", "dad", False)}),
        ("There's a baby in the house", {("household", "baby", False)}),
        ("I'm a nurse with two kids", {("household", "2 kids", False)}),
        ("I have an Instant Pot", {("owns", "instant pot", False)}),
        ("I've already got AirPods", {("owns", "airpods", False)}),
        ("Shrimp gives me hives", {("allergy", "shrimp", False)}),
        ("likes: jazz, budget: 40 EUR", {("likes", "jazz", False), ("budget", "40 EUR", False)}),
        # the commonest statements in the other languages we serve
        ("Je suis végétarienne", {("diet", "vegetarian", False)}),
        ("ich bin Veganer", {("diet", "vegan", False)}),
        ("vivo en Valencia", {("location", "Valencia", False)}),
        ("j'habite à Lyon depuis deux ans", {("location", "Lyon", False)}),
        ("wij wonen in Gent", {("location", "Gent", False)}),
        ("sou alérgico a amendoim", {("allergy", "peanuts", False)}),
        ("ich bin allergisch gegen Nüsse", {("allergy", "nuts", False)}),
        ("Mein Budget liegt bei maximal 150 Euro", {("budget", "150 EUR", False)}),
    ],
)
def test_chat_shortcuts_other_phrasings_and_languages(text: str, expected: set[Fact]) -> None:
    assert facts(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "My sister is vegan and allergic to nuts",  # the left-out subject is the sister
        "my friend, allergic to cats",
        "I work for a startup, based in Berlin",  # the startup is based there
        "Living in Berlin is expensive",
        "I'm tired of waiting, where is my order?",  # about this conversation
        "I want something, like a thriller",  # "like" as a filler
        "vegan please",  # a request
        "gluten free please",
        "soy de Madrid",  # where one is from, in Spanish: not taken
        "vivo en una casa grande",
    ],
)
def test_shortcuts_that_state_nothing(text: str) -> None:
    assert facts(text) == set()


def test_several_facts_in_one_message() -> None:
    text = (
        "Hi! I'm vegan and I live in Lyon with my husband. I love thrillers but I hate horror, "
        "so something under 30 euros please."
    )
    assert facts(text) == {
        ("diet", "vegan", False),
        ("location", "Lyon", False),
        ("household", "husband", False),
        ("likes", "thrillers", False),
        ("dislikes", "horror", False),
        ("budget", "30 EUR", False),
    }


def test_every_value_type_is_a_fact_type() -> None:
    text = (
        "I'm vegan, allergic to nuts, I live in Rome, I have a dog, I own a kindle and I love jazz"
    )
    assert {a.type for a in extract(text, detect_language=DETECT)} <= set(FACT_TYPES)


# -------------------------------------------------------------------- retractions


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I'm not vegetarian any more", {("diet", "vegetarian", True)}),
        ("I stopped being vegan", {("diet", "vegan", True)}),
        ("I used to be vegetarian", {("diet", "vegetarian", True)}),
        ("I'm no longer keto", {("diet", "keto", True)}),
        (
            "I'm not a vegetarian, I'm a pescatarian",
            {("diet", "vegetarian", True), ("diet", "pescatarian", False)},
        ),
        ("I'm not allergic to nuts", {("allergy", "nuts", True)}),
        ("I outgrew my peanut allergy", {("allergy", "peanuts", True)}),
        ("I no longer live in Berlin", {("location", "Berlin", True)}),
        ("I don't live in Paris anymore", {("location", "Paris", True)}),
        ("I moved away from London", {("location", "London", True)}),
        ("we don't have a dog anymore", {("household", "dog", True)}),
        ("our dog passed away last month", {("household", "dog", True)}),
        ("I have no kids", {("household", "kids", True)}),
        ("I sold my ps5", {("owns", "ps5", True)}),
        ("I got rid of my car", {("owns", "car", True)}),
        ("I don't own a car", {("owns", "car", True)}),
        ("I no longer have my kindle", {("owns", "kindle", True)}),
        ("I don't like horror anymore", {("likes", "horror", True)}),
        ("I used to love horror", {("likes", "horror", True)}),
        ("I don't hate musicals any more", {("dislikes", "musicals", True)}),
    ],
)
def test_retractions_are_negated(text: str, expected: set[Fact]) -> None:
    assert facts(text) == expected


def test_a_plain_dislike_is_a_positive_dislikes_not_a_negated_like() -> None:
    assert facts("I don't like horror") == {("dislikes", "horror", False)}


def test_a_correction_in_the_same_message_keeps_one_assertion_per_value() -> None:
    text = "I'm vegan. Well, I'm not vegan any more."
    found = [a for a in extract(text, detect_language=DETECT) if a.type == "diet"]
    assert found == [Assertion("diet", "vegan", negated=True)]


# ------------------------------------------------------------------- no facts


@pytest.mark.parametrize(
    "text",
    [
        # hypotheticals and irrealis
        "if I were vegan, what could I eat",
        "suppose my budget was 100",
        "what if I lived in Paris",
        "let's say I have a budget of 100",
        "I'm thinking about going vegan",
        "I would never be vegan",
        "I'd love to live in Paris",
        "I'll be vegan for a month",
        "I wish I lived in Paris",
        "I think I'm lactose intolerant",
        "if it's under 50 euros I'll take it",
        # questions
        "is this vegan?",
        "do you ship to Berlin?",
        "am I allergic to this?",
        "can a vegetarian eat this?",
        "is this under 50 euros?",
        "do I need to be vegan to order?",
        "is this gluten free",
        # third parties
        "my sister is vegetarian",
        "my friend lives in Rome",
        "my husband is allergic to nuts",
        "my son has a nut allergy",
        "my sister's budget is 50",
        "he says I'm allergic to cats",
        "my doctor thinks I'm lactose intolerant",
        "everyone in my family is vegan",
        "I'm looking for a gift for my vegan sister",
        # requests and mentions
        "vegetarian recipes please",
        "flights to Paris",
        "I'd like a vegan pizza",
        "show me kosher restaurants",
        # travel is not where one lives
        "I'm going to Paris next week",
        "I'm staying in Paris this week",
        # prices are not budgets
        "it costs under 50 euros",
        "the cheapest is under 20 dollars",
        "I paid 50 euros for it",
        "I want to spend more than 50",
        "I cannot afford 200",
        "under 2 kg please",
        "between 2 and 3 kids",
        # 'have' and 'like' without a thing
        "I have a question",
        "I have a question about my order",
        "I got the wrong size",
        "I have 20 minutes",
        "I have read the first book",
        "I like it",
        "I love you",
        "I like to cook",
        "I like the blue one",
        "I love your app",
        "I don't like the price",
        "I love how fast it is",
        # not a diet, not a place, not a household, not owned
        "I'm a vegetarian chef",
        "I don't eat meat on Fridays",
        "I eat vegan on weekdays",
        "I live in a small flat",
        "I live in the city",
        "I live in hope",
        "I live with anxiety",
        "I'm from the marketing team",
        "I have a friend who is vegan",
        "I bought a kindle for my wife",
        "I bought tickets to Paris",
    ],
)
def test_no_fact_is_stated(text: str) -> None:
    assert facts(text) == set()


def test_wife_and_i_is_the_speaker() -> None:
    assert facts("my wife and I are vegan") == {("diet", "vegan", False)}
    assert facts("My son and I love dinosaurs") == {("likes", "dinosaurs", False)}


def test_a_statement_before_a_question_still_counts() -> None:
    assert facts("I'm vegan, is this ok?") == {("diet", "vegan", False)}
    assert facts("I live in Berlin, do you ship there?") == {("location", "Berlin", False)}
    assert facts("I'm allergic to nuts so is this safe?") == {("allergy", "nuts", False)}


def test_quoted_words_are_mentions_not_statements() -> None:
    assert facts('she wrote "I am vegan" on the card') == set()
    assert facts("how do you say 'I live in Berlin' in German") == set()


# ------------------------------------------------------------------- placeholders


@pytest.mark.parametrize(
    "text",
    [
        "I love [email]",
        "I have [phone]",
        "I own [card]",
        "I live in [account]",
        "my budget is [account]",
        "I'm allergic to [email]",
        "I live with [phone]",
        "my email is [email] and my number is [phone]",
    ],
)
def test_placeholders_never_become_values(text: str) -> None:
    for a in extract(text, detect_language=DETECT):
        assert not any(p in a.value for p in PLACEHOLDERS)
        assert "[" not in a.value


def test_redacted_text_keeps_its_facts() -> None:
    text = redact("I'm vegan, I live in Berlin, mail me at ana@example.com or +49 30 1234567")
    assert facts(text) == {("diet", "vegan", False), ("location", "Berlin", False)}


# ----------------------------------------------------------------------- language


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("I'm looking for a cheap laptop for school", "en"),
        ("can you recommend a good thriller for my holiday?", "en"),
        ("je cherche un cadeau pour ma femme", "fr"),
        ("je suis végétarien depuis deux ans", "fr"),
        ("ich suche ein günstiges Fahrrad", "de"),
        ("wir haben zwei Katzen zu Hause", "de"),
        ("no me gustan las películas de terror", "es"),
        ("tengo dos hijos pequeños", "es"),
        ("sto cercando un regalo per mio padre", "it"),
        ("abbiamo un cane e due gatti", "it"),
        ("estou procurando um presente para minha esposa", "pt"),
        ("tenho dois filhos e um cachorro", "pt"),
        ("ik zoek een cadeau voor mijn vriendin", "nl"),
        ("wij hebben twee kinderen en een hond", "nl"),
    ],
)
def test_the_language_a_message_is_written_in(text: str, code: str) -> None:
    assert language(text) == code


@pytest.mark.parametrize(
    "text",
    [
        "merci beaucoup",  # under three words
        "ok",
        "ok ok ok",  # not confidently any language
        "iphone 15 pro max",
        "jag bor i Stockholm och gillar böcker",  # Swedish: not one of ours, not forced into one
        "mieszkam w Warszawie od roku",  # Polish
        "[email] [phone] [card]",
    ],
)
def test_no_language_when_short_unsure_or_not_served(text: str) -> None:
    assert language(text) is None


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("please answer in French", "fr"),
        ("can you reply in spanish?", "es"),
        ("I prefer German", "de"),
        ("Reply in English please", "en"),
        ("Could you write to me in Italian?", "it"),
        ("my preferred language is portuguese", "pt"),
        ("Can we continue in Dutch?", "nl"),
        ("I only speak German", "de"),
        ("Je cherche un livre. Please answer in English", "en"),
        ("Por favor, respóndeme en francés", "fr"),
        ("antworte bitte auf Englisch", "en"),
        ("i want us to talk to each other in italian from now on", "it"),
    ],
)
def test_a_stated_preference_wins_over_detection(text: str, code: str) -> None:
    found = extract(text, detect_language=DETECT)
    assert [a for a in found if a.type == "language"] == [Assertion("language", code)]


def test_language_names_that_are_not_a_preference() -> None:
    assert language("don't answer in French") != "fr"
    assert language("I'm learning Spanish at school") == "en"
    assert facts("I like French films") == {("likes", "french films", False)}
    assert facts("I prefer German") == set()  # a language, not a like


def test_detection_covers_the_languages_we_serve() -> None:
    assert set(DETECTED_LANGUAGES) == {"en", "fr", "de", "es", "it", "pt", "nl"}


def test_the_identifier_is_built_on_first_use_not_at_import() -> None:
    code = (
        "import sys; import rapport.profile.domain.facts; "
        "from rapport.profile.adapters.language import LanguageDetector; LanguageDetector(); "
        "print('py3langid' in sys.modules, 'numpy' in sys.modules)"
    )
    out = subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["False", "False"]
    detector = LanguageDetector()
    detector.prepare()  # builds it explicitly (once a process: a second call is free)
    detector.prepare()


def test_without_a_detector_only_a_stated_language_is_found() -> None:
    assert [a for a in extract("I'm vegan and I live in Berlin") if a.type == "language"] == []
    assert Assertion("language", "fr") in extract("please answer in French")


def test_the_detector_reads_the_words_alone_and_a_stated_language_wins() -> None:
    asked: list[str] = []

    def detect(text: str) -> str | None:
        asked.append(text)
        return "nl"

    found = extract("mail me at [email] about 3 tents please", detect_language=detect)
    assert Assertion("language", "nl") in found
    assert asked == ["mail me at about tents please"]  # no placeholder, no digits
    assert Assertion("language", "fr") in extract("answer in French", detect_language=detect)
    assert extract("ok 42", detect_language=detect) == []  # too few words to ask
    assert asked == ["mail me at about tents please"]


# -------------------------------------------------------------------------- intent


def test_intent_is_optional_and_changes_nothing_for_ordinary_labels() -> None:
    text = "I'm vegan and I live in Berlin"
    assert facts(text) == facts(text, intent="meal_suggestion") == facts(text, intent="oos")


def test_translation_and_spelling_requests_state_nothing() -> None:
    for text, intent in (
        ("how do you say I am vegan in German", "translate"),
        ("how do you spell vegetarian", "spelling"),
    ):
        assert extract(text, intent=intent, detect_language=DETECT) == []


def test_banking_amounts_are_not_a_budget() -> None:
    assert facts("my limit is 5000 dollars max", intent="credit_limit") == set()
    assert facts("my limit is 5000 dollars max") == {("budget", "5000 USD", False)}
    assert facts("send 500 euros to my savings, no more", intent="transfer") == set()
    # A budget named as one still counts, whatever the intent model made of the message.
    stated = facts("I live in Berlin and my budget is 50 euros.", intent="transfer")
    assert ("budget", "50 EUR", False) in stated


def test_travel_intents_do_not_take_where_one_is_from_as_home() -> None:
    assert facts("I'm from Berlin", intent="book_flight") == set()
    assert facts("I live in Berlin", intent="book_flight") == {("location", "Berlin", False)}


def test_change_language_takes_a_bare_language_name() -> None:
    assert language("french please", intent="change_language") == "fr"
    assert language("switch to spanish") == "es"


# ----------------------------------------------------------------------- robustness


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "?!?!...;;;",
        "😀😀😀",
        "\u0130stanbul'da ya\u015f\u0131yorum",
        "a" * 20_000,
        " " * 10_000,
    ],
)
def test_awkward_inputs(text: str) -> None:
    assert facts(text) == set()
