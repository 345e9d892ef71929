"""Experiments: the definitions file, assignment, respond's plan and profile's attribution.

Pure logic, no servers: the statistics are in test_experiment_analysis.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from scipy import stats

from rapport.common.events import Event
from rapport.common.experiments import (
    Audience,
    Experiment,
    ExperimentFile,
    ExperimentFileError,
    load_experiments,
    parse_experiments,
)
from rapport.profile.domain.experiments import Note
from rapport.profile.domain.reducer import Outcome, apply
from rapport.profile.domain.state import Profile, Rules
from rapport.respond.experiments import Experiments, Plan, check_personas
from tests.unit.test_profile_domain import make

pytestmark = pytest.mark.unit

NOW = datetime.now(UTC)
PATH = Path("experiments.yaml")


def variant(name: str, weight: float = 1, **changes: Any) -> dict[str, Any]:
    return {"name": name, "weight": weight, "changes": changes}


def definition(name: str = "tone-test", **fields: Any) -> dict[str, Any]:
    """A running tone experiment, with ``fields`` replacing its own."""
    return {
        "name": name,
        "variants": [variant("control"), variant("concise", tone="concise")],
        "start": NOW - timedelta(days=1),
        "stop": NOW + timedelta(days=6),
        "primary_kpi": "purchase",
        **fields,
    }


def experiment(name: str = "tone-test", **fields: Any) -> Experiment:
    return Experiment.model_validate(definition(name, **fields))


def file_text(*definitions: dict[str, Any]) -> str:
    return yaml.safe_dump({"version": 1, "experiments": list(definitions)}, sort_keys=False)


def problems(text: str) -> list[str]:
    with pytest.raises(ExperimentFileError) as raised:
        parse_experiments(text, PATH)
    return raised.value.lines


# ---- definitions ------------------------------------------------------------------------


def test_a_valid_file_parses() -> None:
    text = file_text(
        definition(
            description="does a concise tone sell more?",
            audience={"tenants": ["acme"], "channels": ["web"]},
            guardrail_kpis=["negative_feedback"],
            attribution_window_hours=72,
        ),
        definition(
            "explore",
            variants=[variant("control", 9), variant("more", 1, exploration_rate=0.5)],
            primary_kpi="click",
        ),
    )
    parsed = parse_experiments(text, PATH)
    assert [e.name for e in parsed.experiments] == ["tone-test", "explore"]
    tone = parsed.experiments[0]
    assert tone.control.name == "control"
    assert tone.kpis == ["purchase", "negative_feedback"]
    assert tone.variant("concise") is not None
    assert tone.variant("concise").changes.tone == "concise"  # type: ignore[union-attr]
    assert parsed.get("explore").shares() == {"control": 0.9, "more": 0.1}  # type: ignore[union-attr]


def test_no_file_configured_is_no_experiments() -> None:
    assert load_experiments(None).experiments == []


def test_a_file_is_read_from_disk(tmp_path: Path) -> None:
    path = tmp_path / "experiments.yaml"
    path.write_text(file_text(definition()), encoding="utf-8")
    assert load_experiments(path).experiments[0].name == "tone-test"


@pytest.mark.parametrize(
    ("fields", "where", "says"),
    [
        ({"name": "Tone Test"}, "experiments[0] (Tone Test).name", "pattern"),
        (
            {"variants": [variant("control", 0), variant("concise", tone="concise")]},
            "experiments[0] (tone-test).variants[0] (control).weight",
            "greater than 0",
        ),
        (
            {"variants": [variant("control", -1), variant("concise", tone="concise")]},
            "experiments[0] (tone-test).variants[0] (control).weight",
            "greater than 0",
        ),
        ({"stop": NOW - timedelta(days=2)}, "experiments[0] (tone-test)", "stop must be after"),
        (
            {"variants": [variant("control"), variant("control", tone="concise")]},
            "experiments[0] (tone-test)",
            "variant names repeat",
        ),
        (
            {
                "variants": [variant("control"), variant("more", exploration_rate=0.5)],
                "audience": {"segments": ["vip"]},
            },
            "experiments[0] (tone-test)",
            "exploration_rate",
        ),
        (
            {"variants": [variant("control", tone="concise"), variant("b", 2, tone="concise")]},
            "experiments[0] (tone-test)",
            "no variant changes anything",
        ),
        ({"primary_kpi": "revenue"}, "experiments[0] (tone-test).primary_kpi", "'purchase'"),
        (
            {"variants": [variant("control"), variant("red", colour="red")]},
            "experiments[0] (tone-test).variants[1] (red).changes.colour",
            "Extra inputs",
        ),
    ],
    ids=[
        "bad-name",
        "zero-weight",
        "negative-weight",
        "stop-before-start",
        "duplicate-variants",
        "segment-audience-with-exploration",
        "no-change",
        "unknown-kpi",
        "unknown-change",
    ],
)
def test_each_mistake_is_one_line_naming_the_experiment_and_field(
    fields: dict[str, Any], where: str, says: str
) -> None:
    lines = problems(file_text(definition(**fields), definition("fine")))
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{PATH}: {where}: "), lines[0]
    assert says in lines[0]
    assert "\n" not in lines[0]


def test_a_repeated_experiment_name_is_one_line_naming_it() -> None:
    lines = problems(file_text(definition(), definition("other"), definition()))
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{PATH}: (file): ")
    assert "experiment names repeat: tone-test" in lines[0]


def test_two_mistakes_are_two_lines() -> None:
    lines = problems(file_text(definition(name="Bad"), definition("fine", primary_kpi="revenue")))
    assert len(lines) == 2
    assert "(Bad).name" in lines[0]
    assert "(fine).primary_kpi" in lines[1]


def test_not_yaml_is_one_line() -> None:
    lines = problems("version: [1\nexperiments: {")
    assert len(lines) == 1
    assert lines[0].startswith(f"{PATH}: not YAML: ")
    assert "\n" not in lines[0]


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.yaml"
    with pytest.raises(ExperimentFileError) as raised:
        load_experiments(missing)
    assert raised.value.lines == [f"{missing}: cannot read: No such file or directory"]
    assert str(missing) in str(raised.value)


# ---- assignment -------------------------------------------------------------------------


def test_assignment_is_deterministic_and_pinned() -> None:
    """Pinned values: a change of the hash (or of its input) would move every running
    experiment's users to other variants, and must show here."""
    halves = experiment()
    thirds = experiment(
        variants=[
            variant("control", 10),
            variant("b", 30, tone="concise"),
            variant("c", 60, tone="empathetic"),
        ]
    )
    # blake2b-64 of "tone-test\x1facme\x1fu-1" / 2**64 = 0.7326; of "...u-2" = 0.2758.
    assert halves.assign("acme", "u-1").name == "concise"
    assert halves.assign("acme", "u-2").name == "control"
    assert thirds.assign("acme", "u-1").name == "c"
    assert thirds.assign("acme", "u-2").name == "b"
    assert {halves.assign("acme", "u-1").name for _ in range(10)} == {"concise"}


def test_assignment_does_not_depend_on_the_process() -> None:
    """blake2b, not hash(): another interpreter with another hash seed agrees."""
    users = [f"u-{i}" for i in range(50)]
    here = [experiment().assign("acme", u).name for u in users]
    script = (
        "import sys, json\n"
        "from datetime import UTC, datetime, timedelta\n"
        "from rapport.common.experiments import Experiment\n"
        "now = datetime.now(UTC)\n"
        "e = Experiment.model_validate({'name': 'tone-test', 'variants': ["
        "{'name': 'control', 'weight': 1}, "
        "{'name': 'concise', 'weight': 1, 'changes': {'tone': 'concise'}}], "
        "'start': now, 'stop': now + timedelta(days=1), 'primary_kpi': 'purchase'})\n"
        "print(json.dumps([e.assign('acme', u).name for u in json.loads(sys.argv[1])]))\n"
    )
    there = subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
        [sys.executable, "-c", script, json.dumps(users)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
        timeout=60,
    )
    assert json.loads(there.stdout) == here


def test_assignment_varies_with_the_experiment_and_tenant() -> None:
    users = [f"u-{i}" for i in range(1000)]
    one, other = experiment("one"), experiment("other")
    differ = sum(one.assign("acme", u).name != other.assign("acme", u).name for u in users)
    assert 400 < differ < 600  # independent halves: about half the users differ
    across = sum(one.assign("acme", u).name != one.assign("globex", u).name for u in users)
    assert 400 < across < 600


@pytest.mark.parametrize("weights", [[1, 1], [10, 30, 60]], ids=["50-50", "10-30-60"])
def test_the_split_follows_the_weights(weights: list[float]) -> None:
    names = ["control", "b", "c"][: len(weights)]
    tones = [None, "concise", "empathetic"]
    split = experiment(
        variants=[
            variant(name, weight, **({"tone": tones[i]} if tones[i] else {}))
            for i, (name, weight) in enumerate(zip(names, weights, strict=True))
        ]
    )
    users = 20_000
    counts = Counter(split.assign("acme", f"user-{i}").name for i in range(users))
    observed = [counts[name] for name in names]
    expected = [users * w / sum(weights) for w in weights]
    assert stats.chisquare(observed, expected).pvalue > 0.001, observed


# ---- audience and schedule --------------------------------------------------------------


def test_an_empty_audience_admits_everyone() -> None:
    assert Audience().admits("acme", None, None)
    assert Audience().admits("acme", "web", ["vip"])


def test_the_audience_filters_tenant_channel_and_segment() -> None:
    audience = Audience(tenants=["acme"], channels=["web"], segments=["vip", "new"])
    assert audience.admits("acme", "web", ["loyal", "vip"])
    assert not audience.admits("globex", "web", ["vip"])
    assert not audience.admits("acme", "app", ["vip"])
    assert not audience.admits("acme", None, ["vip"])
    assert not audience.admits("acme", "web", ["loyal"])
    assert not audience.admits("acme", "web", [])
    assert not audience.admits("acme", "web", None)  # the segment is not known yet


def test_status_and_running_follow_start_and_stop() -> None:
    scheduled = experiment(start=NOW + timedelta(hours=1), stop=NOW + timedelta(days=1))
    assert scheduled.status(NOW) == "scheduled"
    assert not scheduled.running(NOW)
    assert scheduled.status(scheduled.start) == "running"
    assert scheduled.running(scheduled.start)
    assert scheduled.status(scheduled.stop) == "stopped"  # the stop is excluded
    assert not scheduled.running(scheduled.stop)


# ---- respond: who is enrolled, which experiment decides what, what is an exposure -------


def experiments(*definitions: dict[str, Any]) -> Experiments:
    return Experiments(ExperimentFile.model_validate({"version": 1, "experiments": definitions}))


def enrol(
    configured: Experiments,
    plan: Plan,
    segments: list[str] | None,
    *,
    user_id: str = "u-1",
    channel: str | None = "web",
    at: datetime = NOW,
) -> Plan:
    configured.enrol(
        plan, tenant="acme", user_id=user_id, channel=channel, segments=segments, at=at
    )
    return plan


def names(plan: Plan) -> list[str]:
    return [e.experiment.name for e in plan.enrolments]


def test_enrolment_happens_in_two_moments() -> None:
    configured = experiments(
        definition("by-segment", audience={"segments": ["vip"]}),
        definition("for-all"),
    )
    plan = enrol(configured, Plan(), None)
    assert names(plan) == ["for-all"]  # the segment is not known before the fan-out
    enrol(configured, plan, ["vip"])
    assert names(plan) == ["by-segment", "for-all"]  # file order, each once
    assert names(enrol(configured, Plan(), ["loyal"])) == []


def test_only_running_experiments_in_the_audience_enrol() -> None:
    configured = experiments(
        definition("later", start=NOW + timedelta(days=1), stop=NOW + timedelta(days=2)),
        definition("over", start=NOW - timedelta(days=2), stop=NOW - timedelta(days=1)),
        definition("app-only", audience={"channels": ["app"]}),
        definition("globex-only", audience={"tenants": ["globex"]}),
        definition("now"),
    )
    assert names(enrol(configured, Plan(), None)) == ["now"]


def test_the_variant_is_the_hash() -> None:
    configured = experiments(definition())
    for user in ("u-1", "u-2", "u-3"):
        plan = enrol(configured, Plan(), None, user_id=user)
        assert plan.enrolments[0].variant == experiment().assign("acme", user)


def test_the_first_experiment_in_the_file_owns_a_change() -> None:
    """u-1 is in `concise` of both (pinned above for tone-test; asserted for second)."""
    configured = experiments(
        definition(),
        definition(
            "second",
            variants=[variant("control"), variant("concise", tone="empathetic", memory=False)],
        ),
    )
    plan = enrol(configured, Plan(), None)
    first, second = plan.enrolments
    assert second.variant.name == "concise"
    assert first.owns == {"tone"}
    assert second.owns == {"memory"}
    assert plan.tone == "concise"
    assert plan.switched_off("memory")
    assert plan.owner("tone") is first
    assert plan.owner("knowledge") is None
    assert plan.persona is None
    assert plan.exploration_rate is None


def test_a_segment_experiment_earlier_in_the_file_takes_the_change_when_it_joins() -> None:
    configured = experiments(
        definition("by-segment", audience={"segments": ["vip"]}),
        definition("for-all"),
    )
    plan = enrol(configured, Plan(), None)
    assert plan.enrolments[0].owns == {"tone"}
    enrol(configured, plan, ["vip"])
    assert [e.owns for e in plan.enrolments] == [{"tone"}, set()]


def test_the_control_variant_changes_nothing_in_the_reply() -> None:
    configured = experiments(definition())
    plan = enrol(configured, Plan(), None, user_id="u-2")  # pinned: control
    assert plan.enrolments[0].variant.name == "control"
    assert plan.tone is None
    assert plan.owner("tone") is plan.enrolments[0]  # it still decides (and is exposed)


def test_expose_marks_only_the_owner_and_only_when_its_variants_differ() -> None:
    configured = experiments(
        definition(),
        definition(
            "second",
            variants=[variant("control"), variant("concise", tone="empathetic", memory=False)],
        ),
        definition(
            "same-tone",
            variants=[
                variant("control", tone="concise"),
                variant("b", tone="concise", knowledge=False),
            ],
        ),
    )
    plan = enrol(configured, Plan(), None)
    first, second, same_tone = plan.enrolments
    assert same_tone.owns == {"knowledge"}

    plan.expose("tone", served_differently=False)
    assert plan.exposures() == []
    plan.expose("persona", served_differently=True)  # nobody changes the persona
    assert plan.exposures() == []
    plan.expose("tone", served_differently=True)
    assert plan.exposures() == [first]  # not `second`, whose tone the first overrides
    plan.expose("memory", served_differently=True)
    assert plan.exposures() == [first, second]
    assert [(a.experiment, a.exposed) for a in plan.assignments()] == [
        ("tone-test", True),
        ("second", True),
        ("same-tone", False),
    ]


def test_expose_needs_the_owners_variants_to_differ_on_that_kind() -> None:
    configured = experiments(
        definition(
            "same-tone",
            variants=[
                variant("control", tone="concise"),
                variant("b", tone="concise", memory=False),
            ],
        )
    )
    plan = enrol(configured, Plan(), None)
    assert plan.enrolments[0].owns == {"tone", "memory"}
    plan.expose("tone", served_differently=True)
    assert plan.exposures() == []  # every variant sets the same tone
    plan.expose("memory", served_differently=True)
    assert plan.exposures() == plan.enrolments


def test_check_personas_names_each_unknown_persona() -> None:
    configured = ExperimentFile.model_validate(
        {
            "version": 1,
            "experiments": [
                definition(
                    "voice",
                    variants=[
                        variant("control"),
                        variant("pirate", persona="pirate"),
                        variant("friendly", persona="friendly"),
                    ],
                ),
                definition(),
            ],
        }
    )
    assert check_personas(configured, ["default", "friendly"], "experiments.yaml") == [
        "experiments.yaml: experiments (voice).variants (pirate).changes.persona: "
        "no persona `pirate` in the templates (known: default, friendly)"
    ]
    assert check_personas(configured, ["default", "friendly", "pirate"], "x") == []


# ---- profile: attribution through the reducer -------------------------------------------


TONE = experiment()
RULES = Rules(experiments=ExperimentFile(version=1, experiments=[TONE]))
ASSIGNED = TONE.assign("acme", "u-1").name
OTHER = next(v.name for v in TONE.variants if v.name != ASSIGNED)
T0 = NOW - timedelta(hours=2)  # within the experiment's run


def exposure(at: datetime, variant_name: str = ASSIGNED, name: str = "tone-test") -> Event:
    return make("exposure", at, attributes={"experiment": name, "variant": variant_name})


def purchase(at: datetime) -> Event:
    return make("purchase", at, item_id="m-1", value=10.0)


class Attribution:
    """A profile and the notes its events left, applied at increasing offsets."""

    def __init__(self, rules: Rules = RULES) -> None:
        self.profile = Profile(tenant="acme", user_id="u-1")
        self.rules = rules
        self.notes: list[Note] = []
        self.offset = 0

    def apply(self, *events: Event) -> list[Outcome]:
        outcomes = []
        for one in events:
            outcomes.append(
                apply(
                    self.profile,
                    one,
                    partition=0,
                    offset=self.offset,
                    rules=self.rules,
                    notes=self.notes,
                )
            )
            self.offset += 1
        return outcomes

    def outcomes(self) -> dict[str, float]:
        return dict(self.profile.experiments["tone-test"].outcomes)


def test_the_first_exposure_enrols() -> None:
    seen = Attribution()
    assert seen.apply(exposure(T0)) == [Outcome.APPLIED]
    enrolled = seen.profile.experiments["tone-test"]
    assert (enrolled.variant, enrolled.exposed_at, enrolled.outcomes) == (ASSIGNED, T0, {})
    assert seen.notes == [Note("exposure", experiment="tone-test", variant=ASSIGNED)]
    seen.apply(exposure(T0 + timedelta(minutes=5)))
    assert seen.profile.experiments["tone-test"].exposed_at == T0  # the first one stays
    assert len(seen.notes) == 1


def test_a_redelivered_exposure_is_applied_once() -> None:
    seen = Attribution()
    once = exposure(T0)
    seen.apply(once)
    again = apply(seen.profile, once, partition=0, offset=0, rules=RULES, notes=seen.notes)
    assert again is Outcome.DUPLICATE
    assert len(seen.notes) == 1


@pytest.mark.parametrize(
    ("sent", "reason", "named"),
    [
        (lambda: exposure(T0, OTHER), "wrong_variant", "tone-test"),
        (lambda: exposure(T0, name="nothing"), "unknown_experiment", ""),
        (lambda: exposure(TONE.start - timedelta(minutes=1)), "not_running", "tone-test"),
        (lambda: exposure(TONE.stop), "not_running", "tone-test"),
    ],
    ids=["wrong-variant", "unknown", "before-start", "at-stop"],
)
def test_an_exposure_that_cannot_count_is_rejected_with_a_note(
    sent: Any, reason: str, named: str
) -> None:
    seen = Attribution()
    seen.apply(sent())
    assert seen.profile.experiments == {}
    assert seen.notes == [Note("rejected", experiment=named, detail=reason)]


def test_a_purchase_before_the_exposure_does_not_count() -> None:
    seen = Attribution()
    seen.apply(purchase(T0 - timedelta(minutes=1)), exposure(T0))
    assert seen.outcomes() == {}
    seen.apply(purchase(T0 - timedelta(seconds=1)))  # arrives late, still before
    assert seen.outcomes() == {}
    assert [n.kind for n in seen.notes] == ["exposure"]


def test_a_purchase_after_the_exposure_records_its_delay_once() -> None:
    seen = Attribution()
    seen.apply(exposure(T0), purchase(T0 + timedelta(minutes=30)))
    assert seen.outcomes() == {"purchase": 1800.0}
    seen.apply(purchase(T0 + timedelta(minutes=45)))
    assert seen.outcomes() == {"purchase": 1800.0}  # the first purchase's delay stays
    conversions = [n for n in seen.notes if n.kind == "conversion"]
    assert conversions == [
        Note("conversion", experiment="tone-test", variant=ASSIGNED, detail="purchase")
    ]


def test_an_earlier_purchase_arriving_late_takes_the_first_place() -> None:
    seen = Attribution()
    seen.apply(exposure(T0), purchase(T0 + timedelta(minutes=30)))
    seen.apply(purchase(T0 + timedelta(minutes=10)))
    assert seen.outcomes() == {"purchase": 600.0}
    assert [n.kind for n in seen.notes] == ["exposure", "conversion"]  # one user converted


def test_an_earlier_exposure_arriving_late_moves_the_delays() -> None:
    seen = Attribution()
    seen.apply(exposure(T0), purchase(T0 + timedelta(minutes=30)))
    seen.apply(exposure(T0 - timedelta(minutes=20)))
    enrolled = seen.profile.experiments["tone-test"]
    assert enrolled.exposed_at == T0 - timedelta(minutes=20)
    assert enrolled.outcomes == {"purchase": 3000.0}


@pytest.mark.parametrize(
    ("rating", "kpis"),
    [(5, ["positive_feedback"]), (4, ["positive_feedback"]), (3, []), (2, ["negative_feedback"])],
)
def test_feedback_ratings_are_positive_or_negative_outcomes(rating: int, kpis: list[str]) -> None:
    seen = Attribution()
    seen.apply(exposure(T0), make("feedback", T0 + timedelta(minutes=1), rating=rating))
    assert sorted(seen.outcomes()) == kpis
    assert all(delay == 60.0 for delay in seen.outcomes().values())


def test_clicks_and_carts_are_outcomes_too_and_views_are_not() -> None:
    seen = Attribution()
    seen.apply(
        exposure(T0),
        make("item_view", T0 + timedelta(minutes=1), item_id="m-1"),
        make("click", T0 + timedelta(minutes=2), item_id="m-1"),
        make("add_to_cart", T0 + timedelta(minutes=3), item_id="m-1"),
    )
    assert seen.outcomes() == {"click": 120.0, "add_to_cart": 180.0}


def test_an_opt_out_clears_experiments_and_stops_exposures() -> None:
    seen = Attribution()
    seen.apply(exposure(T0), purchase(T0 + timedelta(minutes=5)))
    opt_out = make("consent", T0 + timedelta(minutes=10), attributes={"personalization": False})
    seen.apply(opt_out)
    assert seen.profile.experiments == {}
    assert seen.apply(exposure(T0 + timedelta(minutes=20))) == [Outcome.NOT_CONSENTED]
    assert seen.profile.experiments == {}
    assert [n.kind for n in seen.notes] == ["exposure", "conversion"]


def test_an_exposure_is_not_activity() -> None:
    seen = Attribution()
    seen.apply(exposure(T0))
    assert seen.profile.counters == {}
    assert seen.profile.session is None
    assert seen.profile.affinities == {}
    assert seen.profile.recent_items == []
    assert seen.profile.version == 1  # but it did change the profile (the enrolment)


def test_without_experiments_outcomes_leave_no_trace() -> None:
    seen = Attribution(Rules())
    seen.apply(purchase(T0))
    assert seen.profile.experiments == {}
    assert seen.notes == []
    assert seen.profile.counters == {"purchase": 1}
