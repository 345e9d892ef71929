"""Reply templates: a YAML file a team edits, validated by a schema, chosen and filled here.

A template is a list of parts. A part is kept only when every placeholder in
it has a value (so "Since you enjoy {interests}..." disappears for a user with
no known interests); a part with ``unless`` is kept only when those
placeholders are all empty (its alternative). Placeholders are plain
``{name}`` from a fixed list: no expressions, attribute access or code, so a
template file can be edited by anyone and checked with
``rapport-respond templates check FILE``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Literal, Self, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from rapport.common.experiments import Tone

TONES: tuple[Tone, ...] = get_args(Tone)

# Every placeholder a template part may use, and what fills it.
PLACEHOLDERS: dict[str, str] = {
    "greeting": "the persona's greeting",
    "sign_off": "the persona's sign-off",
    "intent": "the message's intent, readable (`card declined`)",
    "domain": "the intent's domain, readable (`credit cards`)",
    "interests": "the user's strongest interests (`Sci-Fi and Action`)",
    "top_interest": "the strongest interest",
    "segment": "the user's segment name",
    "recommendations": "the recommendations, one `recommendation_line` each",
    "first_title": "the first recommendation's title",
    "first_reason": "the first recommendation's reason",
    "knowledge_title": "the title of the company document that answers the message",
    "knowledge_snippet": "its passage that fits the message",
    "knowledge_url": "its url, when it has one",
    "memory_note": "what the user told us that matters to this request, as a clause "
    "(`you're vegetarian`, `your budget is 50 EUR`); empty when nothing does",
}
LINE_PLACEHOLDERS: dict[str, str] = {"title": "the item's title", "reason": "why it is recommended"}
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")

Id = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]
Name = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Text = Annotated[str, StringConstraints(max_length=2000)]


def placeholders(text: str) -> list[str]:
    return _PLACEHOLDER.findall(text)


def _check_placeholders(text: str, allowed: Mapping[str, str], where: str) -> None:
    unknown = sorted(set(placeholders(text)) - set(allowed))
    if unknown:
        raise ValueError(
            f"{where}: unknown placeholder(s) {', '.join('{' + u + '}' for u in unknown)}; "
            f"known: {', '.join(sorted(allowed))}"
        )


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Persona(_Strict):
    id: Id = Field(description="What a chatbot passes as `model` to pick this persona.")
    description: Text = ""
    greeting: Text = ""
    sign_off: Text = ""
    style: Text = Field("", description="One line of voice for the LLM's system policy.")


class Part(_Strict):
    text: Text
    unless: list[Name] = Field(
        default_factory=list, description="Kept only when all these placeholders are empty."
    )


class When(_Strict):
    """Every list given must contain the reply's value; an empty list matches anything."""

    intents: list[Name] = Field(default_factory=list)
    domains: list[Name] = Field(default_factory=list)
    segments: list[Name] = Field(default_factory=list)
    tones: list[Tone] = Field(default_factory=list)
    personalized: bool | None = None
    knowledge: bool | None = Field(
        None,
        description="True: the best passage of the company's documents passes "
        "`RAPPORT_RESPOND_KNOWLEDGE_ANSWER_SCORE`, so the reply can answer from it.",
    )

    @property
    def specificity(self) -> int:
        """Knowledge beats intent beats domain beats segment beats tone beats consent: a
        company document that answers the message is the most specific thing known."""
        return (
            32 * (self.knowledge is not None)
            + 16 * bool(self.intents)
            + 8 * bool(self.domains)
            + 4 * bool(self.segments)
            + 2 * bool(self.tones)
            + (self.personalized is not None)
        )


class Template(_Strict):
    id: Id
    when: When = Field(default_factory=When)
    parts: list[Text | Part] = Field(min_length=1, max_length=20)

    def normalized_parts(self) -> list[Part]:
        return [p if isinstance(p, Part) else Part(text=p) for p in self.parts]


class TemplateFile(_Strict):
    version: Literal[1]
    personas: list[Persona] = Field(min_length=1)
    domains: dict[Name, list[Name]] = Field(
        default_factory=dict, description="Domain name to the intents it holds."
    )
    recommendation_line: Text = "- {title}: {reason}"
    max_recommendations: int = Field(3, ge=0, le=20)
    templates: list[Template] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        _unique((p.id for p in self.personas), "persona id")
        _unique((t.id for t in self.templates), "template id")
        _unique((i for intents in self.domains.values() for i in intents), "intent in domains")
        _check_placeholders(self.recommendation_line, LINE_PLACEHOLDERS, "recommendation_line")
        for template in self.templates:
            for index, part in enumerate(template.normalized_parts()):
                where = f"template {template.id!r} part {index}"
                _check_placeholders(part.text, PLACEHOLDERS, where)
                _check_placeholders(
                    "".join("{" + u + "}" for u in part.unless), PLACEHOLDERS, where
                )
            missing = sorted(set(template.when.domains) - set(self.domains))
            if missing:
                raise ValueError(f"template {template.id!r}: undefined domain(s) {missing}")
        if not any(t.when.specificity == 0 for t in self.templates):
            raise ValueError("add a catch-all template (no `when`): every reply needs one")
        return self

    def domain_of(self, intent: str | None) -> str | None:
        if intent is None:
            return None
        for domain, intents in self.domains.items():
            if intent in intents:
                return domain
        return None

    def persona(self, persona_id: str | None) -> Persona | None:
        if persona_id is None:
            return self.personas[0]
        return next((p for p in self.personas if p.id == persona_id), None)


def _unique(values: Iterable[str], what: str) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"duplicate {what}: {value!r}")
        seen.add(value)


def builtin_templates_text() -> str:
    return files("rapport.respond").joinpath("templates.yaml").read_text(encoding="utf-8")


def parse_templates(text: str) -> TemplateFile:
    """Raises ``ValueError`` (YAML) or ``pydantic.ValidationError`` (schema) on a bad file."""
    data = yaml.safe_load(text)
    return TemplateFile.model_validate(data)


def load_templates(path: Path | None) -> TemplateFile:
    return parse_templates(path.read_text(encoding="utf-8") if path else builtin_templates_text())


@dataclass(frozen=True)
class Selection:
    intent: str | None
    domain: str | None
    segments: frozenset[str]
    tone: Tone
    personalized: bool
    knowledge: bool = False


def _matches(when: When, s: Selection) -> bool:
    return (
        (not when.intents or s.intent in when.intents)
        and (not when.domains or s.domain in when.domains)
        and (not when.segments or bool(s.segments.intersection(when.segments)))
        and (not when.tones or s.tone in when.tones)
        and (when.personalized is None or when.personalized == s.personalized)
        and (when.knowledge is None or when.knowledge == s.knowledge)
    )


def choose(templates: TemplateFile, selection: Selection) -> Template:
    """The most specific matching template; the first in the file on a tie."""
    best: Template | None = None
    for template in templates.templates:
        if _matches(template.when, selection) and (
            best is None or template.when.specificity > best.when.specificity
        ):
            best = template
    if best is None:  # the schema requires a catch-all, so only a hand-built file gets here
        raise ValueError("no template matches and there is no catch-all")
    return best


def fill(text: str, values: Mapping[str, str]) -> str:
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), ""), text)


def render(template: Template, values: Mapping[str, str]) -> str:
    """Parts whose placeholders all have values (or, with ``unless``, all lack one), joined."""
    kept = []
    for part in template.normalized_parts():
        if part.unless and any(values.get(name) for name in part.unless):
            continue
        if any(not values.get(name) for name in placeholders(part.text)):
            continue
        text = fill(part.text, values).strip()
        if text:
            kept.append(text)
    return "\n\n".join(kept)


def check_file(path: Path) -> list[str]:
    """Problems with a team's template file, one line each; empty when it is valid."""
    from pydantic import ValidationError  # noqa: PLC0415 - only the CLI needs it

    try:
        parse_templates(path.read_text(encoding="utf-8"))
    except OSError as exc:
        return [f"{path}: {exc.strerror or exc}"]
    except yaml.YAMLError as exc:
        return [f"{path}: not valid YAML: {exc}"]
    except ValidationError as exc:
        return [
            f"{path}: {'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}"
            for e in exc.errors()
        ]
    return []
