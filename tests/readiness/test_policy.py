"""The declarative policy layer: loading, evaluation, selection, templates and errors (pure, no server)."""

from __future__ import annotations

import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workflow.config import ConfigError
from workflow.ian.rules.availability import Availability
from workflow.kernel.attributes import is_uid
from workflow.readiness.rules.policy import (
    AllOf, AnyOf, Choices, Evaluation, ExpectedSetAvailable, ExpectedSetKnown, Facts, InstanceFacts, Location,
    OnDowngrade, PolicyError, PolicySet, Priority, Readiness, Settled, StudyFacts, WorkitemFacts, describe,
    evaluate_readiness, load_policies, loads_policies, readiness_change,
)

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
CT = "1.2.840.10008.5.1.4.1.1.2"
SR = "1.2.840.10008.5.1.4.1.1.88.22"
ON, NEAR, OFF, GONE = (Availability.ONLINE, Availability.NEARLINE, Availability.OFFLINE,
                       Availability.UNAVAILABLE)


def loc(ae: str, availability: Availability = ON, at: datetime = T0, url: str | None = None) -> Location:
    return Location(ae, availability, url, at)


def inst(uid: str, *locations: Location, sop: str = CT, series: str = "1.2.9") -> InstanceFacts:
    return InstanceFacts(uid, sop, series, tuple(locations or (loc("PACS"),)), T0)


def facts(*instances: InstanceFacts, expected=None, listed=(), last: datetime | None = T0,
          now: datetime | None = None) -> Facts:
    return Facts(None if expected is None else frozenset(expected), tuple(instances), frozenset(listed), last,
                 now or T0 + timedelta(seconds=1))


def default_policy():
    return load_policies(ROOT / "policies").policy("default")


def one_policy(body: str, name: str = "p"):
    """A policy set with a single catch-all policy whose keys are `body`."""
    return loads_policies(f'[[policy]]\nname = "{name}"\n' + textwrap.dedent(body), "test.toml").policy(name)


def uids(evaluation: Evaluation) -> list[str]:
    return [i.instance.sop_instance_uid for i in evaluation.inputs]


# --- the shipped default -------------------------------------------------------------------------------

def test_shipped_default_loads_and_says_what_the_requirement_says():
    ps = load_policies(ROOT / "policies")
    assert [p.name for p in ps.policies] == ["default"] and ps.templates == ()
    p = ps.policies[0]
    assert p.applies_to.matches_everything
    assert p.inputs.accepted_availability == {ON} and p.inputs.sop_class_uids == ()
    assert p.inputs.restrict_to_expected_set
    assert p.on_downgrade is OnDowngrade.INCOMPLETE
    assert p.complete_when == AnyOf((ExpectedSetAvailable(), AllOf((ExpectedSetKnown(False), Settled(600.0)))))
    # the same through an explicit file list
    assert load_policies([ROOT / "policies" / "default.toml"]).policies == ps.policies


def test_shipped_readme_is_not_the_placeholder():
    text = (ROOT / "policies" / "README.md").read_text()
    for key in ("accepted_availability", "preferred_retrieve_aes", "expected_set_available", "settled",
                "on_downgrade", "study_description", "start_delay", "link_by_accession_number"):
        assert key in text


def test_readme_examples_load_next_to_the_default(tmp_path):
    import re

    blocks = re.findall(r"```toml\n(.*?)```", (ROOT / "policies" / "README.md").read_text(), re.S)
    examples = [b for b in blocks if ("[[policy]]" in b or "[[template]]" in b) and 'name = "..."' not in b]
    assert len(examples) >= 6
    default = (ROOT / "policies" / "default.toml").read_text()
    for i, block in enumerate(examples):
        site = tmp_path / f"site{i}.toml"
        if 'name = "example"' in block:  # the two spellings of the same tree, on their own
            site.write_text(block.replace('name = "example"', 'name = "example"\norder = 1'))
            load_policies([site])
            continue
        site.write_text(block)
        (tmp_path / "default.toml").write_text(default)
        ps = load_policies([tmp_path / "default.toml", site])
        assert ps.policies[-1].name == "default"
    # the inputs snippet for default.toml, applied to it
    snippet = next(b for b in blocks if b.startswith("[policy.inputs]"))
    edited = re.sub(r"\[policy\.inputs\].*?(?=\n# -{10})", snippet.strip(), default, count=1, flags=re.S)
    assert edited != default
    p = loads_policies(edited).policy("default")
    assert p.inputs.accepted_availability == {ON, NEAR} and p.inputs.preferred_retrieve_aes == ("PACS_FAST", "ARCHIVE")


# --- evaluate: expected set ----------------------------------------------------------------------------

def test_expected_set_fully_online_is_ready_with_exactly_those_inputs():
    e = evaluate_readiness(default_policy(), facts(inst("1.1"), inst("1.2"), inst("1.3"), inst("1.9"),
                                         expected={"1.1", "1.2", "1.3"}))
    assert e.readiness is Readiness.READY
    assert uids(e) == ["1.1", "1.2", "1.3"]  # 1.9 is not expected: not an input
    assert e.missing == () and e.settle_due_at is None
    assert all(i.ae_title == "PACS" and i.availability is ON for i in e.inputs)


def test_one_expected_instance_not_announced_is_incomplete_and_missing():
    e = evaluate_readiness(default_policy(), facts(inst("1.1"), inst("1.2"), expected={"1.1", "1.2", "1.3"}))
    assert e.readiness is Readiness.INCOMPLETE
    assert e.missing == ("1.3",) and e.not_available == ()
    assert uids(e) == ["1.1", "1.2"]
    assert any("not yet announced" in r for r in e.reasons)
    assert e.settle_due_at is None  # an MPPS is known: the settle rule cannot apply


def test_one_expected_instance_offline_is_unavailable():
    e = evaluate_readiness(default_policy(), facts(inst("1.1"), inst("1.2", loc("ARCH", OFF)), expected={"1.1", "1.2"}))
    assert e.readiness is Readiness.UNAVAILABLE
    assert e.missing == ("1.2",) and e.not_available == ("1.2",)
    assert uids(e) == ["1.1"]
    assert any("1.2 OFFLINE" in r for r in e.reasons)


def test_expected_instance_unavailable_everywhere_is_unavailable():
    e = evaluate_readiness(default_policy(), facts(inst("1.1"), inst("1.2", loc("PACS", GONE)), expected={"1.1", "1.2"}))
    assert e.readiness is Readiness.UNAVAILABLE and e.not_available == ("1.2",)


def test_unannounced_wins_over_offline():
    e = evaluate_readiness(default_policy(), facts(inst("1.1", loc("ARCH", OFF)), expected={"1.1", "1.2"}))
    assert e.readiness is Readiness.INCOMPLETE
    assert e.missing == ("1.1", "1.2") and e.not_available == ("1.1",)


def test_offline_elsewhere_does_not_matter_when_online_somewhere():
    e = evaluate_readiness(default_policy(), facts(inst("1.1", loc("ARCH", OFF), loc("PACS", ON)), expected={"1.1"}))
    assert e.readiness is Readiness.READY and e.inputs[0].ae_title == "PACS"


def test_nearline_accepted_or_not():
    f = facts(inst("1.1"), inst("1.2", loc("ARCH", NEAR)), expected={"1.1", "1.2"})
    assert evaluate_readiness(default_policy(), f).readiness is Readiness.UNAVAILABLE
    near = one_policy("""
        inputs.accepted_availability = ["ONLINE", "NEARLINE"]
        complete_when = { expected_set_available = true }
    """)
    e = evaluate_readiness(near, f)
    assert e.readiness is Readiness.READY and uids(e) == ["1.1", "1.2"]
    assert e.inputs[1].availability is NEAR and e.inputs[1].ae_title == "ARCH"
    # OFFLINE is still not accepted
    e = evaluate_readiness(near, facts(inst("1.1", loc("ARCH", OFF)), expected={"1.1"}))
    assert e.readiness is Readiness.UNAVAILABLE


def test_sop_class_filter():
    ct_only = one_policy(f"""
        inputs.sop_class_uids = ["{CT}"]
        complete_when = {{ expected_set_available = true }}
    """)
    # the SR is expected, but not of an allowed class: neither required nor an input
    f = facts(inst("1.1"), inst("1.2", sop=SR), expected={"1.1", "1.2"})
    e = evaluate_readiness(ct_only, f)
    assert e.readiness is Readiness.READY and uids(e) == ["1.1"]
    assert evaluate_readiness(default_policy(), f).inputs[1].instance.sop_class_uid == SR
    # an SR that is offline does not block either
    assert evaluate_readiness(ct_only, facts(inst("1.1"), inst("1.2", loc("A", OFF), sop=SR),
                                   expected={"1.1", "1.2"})).readiness is Readiness.READY
    # an expected instance not announced yet may be a CT: still required
    e = evaluate_readiness(ct_only, facts(inst("1.1"), expected={"1.1", "1.3"}))
    assert e.readiness is Readiness.INCOMPLETE and e.missing == ("1.3",)


def test_preferred_retrieve_ae_order_chooses_the_location():
    later = T0 + timedelta(seconds=30)
    i = inst("1.1", loc("PACS", ON, later, "http://pacs/1.1"), loc("ARCHIVE", ON, T0, "http://arch/1.1"),
             loc("OTHER", ON, later + timedelta(seconds=5)))
    f = facts(i, expected={"1.1"})
    # no preference: best availability (all ONLINE), then the most recent
    assert evaluate_readiness(default_policy(), f).inputs[0].ae_title == "OTHER"
    prefer = one_policy("""
        inputs.preferred_retrieve_aes = ["ARCHIVE", "PACS"]
        complete_when = { expected_set_available = true }
    """)
    chosen = evaluate_readiness(prefer, f).inputs[0]
    assert (chosen.ae_title, chosen.retrieve_url) == ("ARCHIVE", "http://arch/1.1")
    # a preferred AE whose availability is not accepted is skipped
    f2 = facts(inst("1.1", loc("PACS", ON, later), loc("ARCHIVE", NEAR, T0), loc("X", ON, later)),
               expected={"1.1"})
    assert evaluate_readiness(prefer, f2).inputs[0].ae_title == "PACS"
    # preference comes before availability when both are accepted
    prefer_near = one_policy("""
        inputs.preferred_retrieve_aes = ["ARCHIVE"]
        inputs.accepted_availability = ["ONLINE", "NEARLINE"]
        complete_when = { expected_set_available = true }
    """)
    assert evaluate_readiness(prefer_near, f2).inputs[0].ae_title == "ARCHIVE"
    # unlisted AEs: best availability first
    f3 = facts(inst("1.1", loc("B", NEAR, later), loc("C", ON, T0)), expected={"1.1"})
    assert evaluate_readiness(prefer_near, f3).inputs[0].ae_title == "C"


# --- evaluate: settle (no MPPS) ------------------------------------------------------------------------

def test_no_mpps_settles_after_600_seconds_without_new_ian():
    p = default_policy()
    last = T0 + timedelta(minutes=3)
    instances = (inst("1.1"), inst("1.2"))
    before = evaluate_readiness(p, facts(*instances, last=last, now=last + timedelta(seconds=599)))
    assert before.readiness is Readiness.INCOMPLETE
    assert before.settle_due_at == last + timedelta(seconds=600)
    assert uids(before) == ["1.1", "1.2"]  # inputs are filled in while waiting
    at = evaluate_readiness(p, facts(*instances, last=last, now=last + timedelta(seconds=600)))
    assert at.readiness is Readiness.READY and at.settle_due_at is None
    assert uids(at) == ["1.1", "1.2"]


def test_settled_with_an_offline_instance_is_unavailable_and_withdrawn_ones_are_ignored():
    p = default_policy()
    later = T0 + timedelta(hours=1)
    e = evaluate_readiness(p, facts(inst("1.1"), inst("1.2", loc("A", OFF)), now=later))
    assert e.readiness is Readiness.UNAVAILABLE and e.not_available == ("1.2",)
    e = evaluate_readiness(p, facts(inst("1.1"), inst("1.2", loc("A", GONE)), now=later))
    assert e.readiness is Readiness.READY and uids(e) == ["1.1"]


def test_no_ian_at_all_is_incomplete_without_timer():
    e = evaluate_readiness(default_policy(), facts(last=None))
    assert e.readiness is Readiness.INCOMPLETE and e.settle_due_at is None and e.inputs == ()


def test_settle_never_makes_ready_once_an_mpps_is_known():
    e = evaluate_readiness(default_policy(), facts(inst("1.1"), expected={"1.1", "1.2"}, now=T0 + timedelta(days=1)))
    assert e.readiness is Readiness.INCOMPLETE and e.missing == ("1.2",)


# --- evaluate: combinations ----------------------------------------------------------------------------

def test_all_of_count_and_settle():
    p = one_policy("""
        complete_when = { all_of = [ { expected_count = 3 }, { settled = 60 } ] }
    """)
    three = (inst("1.1"), inst("1.2"), inst("1.3"))
    e = evaluate_readiness(p, facts(*three[:2], now=T0 + timedelta(seconds=61)))
    assert e.readiness is Readiness.INCOMPLETE and e.settle_due_at is None  # time alone will not help
    e = evaluate_readiness(p, facts(*three, now=T0 + timedelta(seconds=10)))
    assert e.readiness is Readiness.INCOMPLETE and e.settle_due_at == T0 + timedelta(seconds=60)
    assert evaluate_readiness(p, facts(*three, now=T0 + timedelta(seconds=60))).readiness is Readiness.READY


def test_any_of_count_or_listed():
    p = one_policy("""
        [policy.complete_when]
        any_of = [ { expected_count = 5 }, { listed_instances_available = true } ]
    """)
    f = facts(inst("1.1"), inst("1.2"), inst("1.3", loc("A", OFF)), listed={"1.1", "1.2"})
    e = evaluate_readiness(p, f)
    assert e.readiness is Readiness.READY and uids(e) == ["1.1", "1.2"] and e.missing == ()
    # a listed instance offline, count not reached: UNAVAILABLE beats INCOMPLETE in any_of
    e = evaluate_readiness(p, facts(inst("1.1"), inst("1.2", loc("A", OFF)), listed={"1.1", "1.2"}))
    assert e.readiness is Readiness.UNAVAILABLE and e.not_available == ("1.2",)
    # a listed instance never announced
    e = evaluate_readiness(p, facts(inst("1.1"), listed={"1.1", "1.7"}))
    assert e.readiness is Readiness.INCOMPLETE and e.missing == ("1.7",)


def test_all_of_takes_the_lowest_any_of_the_highest():
    f = facts(inst("1.1", loc("A", OFF)), expected={"1.1"})  # expected_set_available -> UNAVAILABLE
    both = "{ expected_set_available = true }, { expected_count = 2 }"  # the count -> INCOMPLETE
    assert evaluate_readiness(one_policy(f"complete_when = {{ all_of = [ {both} ] }}"), f).readiness is Readiness.INCOMPLETE
    assert evaluate_readiness(one_policy(f"complete_when = {{ any_of = [ {both} ] }}"), f).readiness is Readiness.UNAVAILABLE


def test_expected_count_unavailable_when_enough_are_announced():
    p = one_policy("complete_when = { expected_count = 2 }")
    e = evaluate_readiness(p, facts(inst("1.1"), inst("1.2", loc("A", OFF))))
    assert e.readiness is Readiness.UNAVAILABLE
    assert evaluate_readiness(p, facts(inst("1.1"))).readiness is Readiness.INCOMPLETE
    assert evaluate_readiness(p, facts(inst("1.1"), inst("1.2"), inst("1.3"))).readiness is Readiness.READY


def test_never_ready_without_an_input():
    p = one_policy("complete_when = { expected_set_known = false }")
    e = evaluate_readiness(p, facts(inst("1.1", loc("A", OFF))))
    assert e.readiness is Readiness.INCOMPLETE and any("never READY" in r for r in e.reasons)


def test_restrict_to_expected_set_off_lists_every_instance():
    p = one_policy("""
        inputs.restrict_to_expected_set = false
        complete_when = { expected_set_available = true }
    """)
    e = evaluate_readiness(p, facts(inst("1.1"), inst("1.9"), expected={"1.1"}))
    assert e.readiness is Readiness.READY and uids(e) == ["1.1", "1.9"]


# --- readiness_change: which workitems change --------------------------------------------------------------------

def test_readiness_change_never_touches_in_progress_or_final():
    ready = evaluate_readiness(default_policy(), facts(inst("1.1"), expected={"1.1"}))
    offline = evaluate_readiness(default_policy(), facts(inst("1.1", loc("A", OFF)), expected={"1.1"}))
    for state in ("IN PROGRESS", "COMPLETED", "CANCELED"):
        assert readiness_change(default_policy(), state, "READY", offline) is None
        assert readiness_change(default_policy(), state, "INCOMPLETE", ready) is None


def test_readiness_change_downgrade_follows_on_downgrade():
    offline = facts(inst("1.1", loc("A", OFF)), inst("1.2"), expected={"1.1", "1.2"})
    p = default_policy()
    d = readiness_change(p, "SCHEDULED", "READY", evaluate_readiness(p, offline))
    assert d.readiness is Readiness.INCOMPLETE and [i.instance.sop_instance_uid for i in d.inputs] == ["1.2"]
    for value, expected in (("UNAVAILABLE", Readiness.UNAVAILABLE), ("ignore", None)):
        q = one_policy(f'on_downgrade = "{value}"\ncomplete_when = {{ expected_set_available = true }}')
        d = readiness_change(q, "SCHEDULED", "READY", evaluate_readiness(q, offline))
        assert (d.readiness if d else None) == expected
    # not READY before: the evaluation is written as it is
    assert readiness_change(p, "SCHEDULED", "INCOMPLETE", evaluate_readiness(p, offline)).readiness is Readiness.UNAVAILABLE
    ok = evaluate_readiness(p, facts(inst("1.1"), expected={"1.1"}))
    assert readiness_change(p, "SCHEDULED", None, ok).readiness is Readiness.READY


# --- selection -----------------------------------------------------------------------------------------

SELECTION = """
[[policy]]
name = "ct-3d"
order = 10
applies_to.scheduled_workitem_codes = [{ value = "3D", scheme = "99LOCAL" }]
applies_to.worklist_labels = ["CT*"]
complete_when = { expected_count = 1 }

[[policy]]
name = "emergency"
order = 20
applies_to.accession_numbers = ["ER?*"]
applies_to.link_by_accession_number = true
complete_when = { expected_count = 1 }

[[policy]]
name = "fallback"
order = 1000
complete_when = { expected_set_available = true }
"""


def test_select_first_matching_policy_selectors_and_within_or():
    ps = loads_policies(SELECTION)
    code = frozenset({("3D", "99LOCAL")})
    assert ps.select(WorkitemFacts("1.5", frozenset(), code, "CT LAB")).name == "ct-3d"
    assert ps.select(WorkitemFacts("1.5", frozenset(), code, "MR LAB")).name == "fallback"  # AND across keys
    assert ps.select(WorkitemFacts("1.5", frozenset(), frozenset(), "CT LAB")).name == "fallback"
    assert ps.select(WorkitemFacts("1.5", frozenset({"X1", "ER12"}), frozenset(), None)).name == "emergency"
    assert ps.select(WorkitemFacts("1.5", frozenset({"ER"}), frozenset(), None)).name == "fallback"
    assert ps.select(WorkitemFacts()).name == "fallback"


def test_policy_for_links_by_study_and_optionally_by_accession():
    ps = loads_policies(SELECTION)
    er = WorkitemFacts("9.9", frozenset({"ER12"}), frozenset(), None)
    assert ps.policy_for(er, "1.5", {"ER12"}).name == "emergency"  # other study UID, linked by accession
    assert ps.policy_for(er, "1.5", {"ER13"}) is None
    plain = WorkitemFacts(None, frozenset({"A7"}), frozenset(), None)
    assert ps.policy_for(plain, "1.5", {"A7"}) is None  # the fallback does not link by accession
    assert ps.policy_for(WorkitemFacts("1.5"), "1.5").name == "fallback"


def test_policy_set_requires_a_fallback_when_built_directly():
    p = loads_policies(SELECTION).policy("ct-3d")
    with pytest.raises(ValueError):
        PolicySet((p,))


# --- templates -----------------------------------------------------------------------------------------

TEMPLATE_PART = r"""
[[template]]
name = "ct-chest-3d"
[template.conditions]
modalities = ["CT"]
calling_ae_titles = ["CT_SCANNER_1"]
procedure_codes = [{ value = "CTCHEST", scheme = "99LOCAL" }]
study_description = '(?i)\b(chest|thorax)\b'
[template.creates]
scheduled_workitem_code = { value = "110005", scheme = "DCM", meaning = "Interpretation" }
station_name_code = { value = "WS3D", scheme = "99LOCAL", meaning = "3D workstation" }
procedure_step_label = "CT 3D"
priority = "HIGH"
worklist_label = "3D LAB"
start_delay = 300

[[template]]
name = "everything-qa"
[template.creates]
scheduled_workitem_code = { value = "QA", scheme = "99LOCAL", meaning = "QA" }
procedure_step_label = "QA"
"""
TEMPLATES = '[[policy]]\nname = "default"\ncomplete_when = { expected_set_available = true }\n' + TEMPLATE_PART


def test_template_matching_including_regex():
    ps = loads_policies(TEMPLATES)
    t = ps.templates[0]
    study = StudyFacts("1.5", frozenset({"CT", "SR"}), frozenset({CT}), frozenset({"CT_SCANNER_1"}),
                       frozenset({("CTCHEST", "99LOCAL")}), "CT Thorax w/o contrast")
    assert t.matches(study)
    assert [x.name for x in ps.templates_for(study)] == ["ct-chest-3d", "everything-qa"]
    for change in ({"study_description": "CT abdomen"}, {"study_description": "chestnut"},
                   {"study_description": None}, {"modalities": frozenset({"MR"})},
                   {"calling_ae_titles": frozenset({"OTHER"})}, {"procedure_codes": frozenset()}):
        other = StudyFacts(**{**study.__dict__, **change})
        assert not t.matches(other) and len(t.mismatches(other)) == 1, change
        assert [x.name for x in ps.templates_for(other)] == ["everything-qa"]
    k = t.creates
    assert (k.priority, k.worklist_label, k.procedure_step_label) == (Priority.HIGH, "3D LAB", "CT 3D")
    assert k.scheduled_workitem_code.key == ("110005", "DCM") and k.station_name_code.meaning == "3D workstation"
    assert t.start_at(T0) == T0 + timedelta(seconds=300)
    assert ps.templates[1].creates.priority is Priority.MEDIUM and ps.templates[1].creates.worklist_label is None


def test_template_workitem_uid_is_idempotent_per_study_and_template():
    a, b = loads_policies(TEMPLATES).templates
    uid = a.workitem_uid("1.2.3")
    assert is_uid(uid) and uid == a.workitem_uid("1.2.3")
    assert len({uid, a.workitem_uid("1.2.4"), b.workitem_uid("1.2.3")}) == 3


def test_describe_names_every_policy_and_template():
    text = describe(loads_policies(SELECTION + TEMPLATE_PART))
    for word in ("ct-3d", "emergency", "fallback", "ct-chest-3d", "everything-qa", "3D LAB", "(3D, 99LOCAL)",
                 "Accession Number matching `ER?*`", "IN PROGRESS", "now + 300 s (5 min)"):
        assert word in text
    assert "No template is enabled" in describe(load_policies(ROOT / "policies"))


# --- order independence (property) --------------------------------------------------------------------

AES = ["PACS", "ARCH", "CLOUD"]
_location = st.builds(Location, st.sampled_from(AES), st.sampled_from(list(Availability)),
                      st.sampled_from([None, "http://a/x", "http://b/x"]),
                      st.integers(0, 3).map(lambda m: T0 + timedelta(minutes=m)))
_instance = st.builds(lambda uid, sop, locs: InstanceFacts(uid, sop, "1.2.9", tuple(locs), T0),
                      st.sampled_from([f"1.{i}" for i in range(8)]), st.sampled_from([CT, SR]),
                      st.lists(_location, min_size=1, max_size=4))
_policies = [
    lambda: default_policy(),
    lambda: one_policy("""
        inputs.accepted_availability = ["ONLINE", "NEARLINE"]
        inputs.preferred_retrieve_aes = ["ARCH"]
        complete_when = { any_of = [ { expected_set_available = true }, { expected_count = 3 } ] }
    """),
    lambda: one_policy(f"""
        inputs.sop_class_uids = ["{CT}"]
        complete_when = {{ all_of = [ {{ listed_instances_available = true }}, {{ settled = 90 }} ] }}
    """),
]


@settings(max_examples=150, deadline=None)
@given(instances=st.lists(_instance, max_size=6, unique_by=lambda i: i.sop_instance_uid),
       expected=st.none() | st.frozensets(st.sampled_from([f"1.{i}" for i in range(8)]), max_size=5),
       listed=st.frozensets(st.sampled_from([f"1.{i}" for i in range(8)]), max_size=3),
       minutes=st.integers(0, 5), which=st.integers(0, len(_policies) - 1), data=st.data())
def test_evaluate_does_not_depend_on_the_order_of_instances_or_locations(instances, expected, listed, minutes,
                                                                         which, data):
    policy = _policies[which]()
    now = T0 + timedelta(minutes=minutes)
    base = evaluate_readiness(policy, Facts(expected, tuple(instances), listed, T0, now))
    shuffled = [InstanceFacts(i.sop_instance_uid, i.sop_class_uid, i.series_instance_uid,
                              tuple(data.draw(st.permutations(i.locations))), i.first_notified_at)
                for i in data.draw(st.permutations(instances))]
    again = evaluate_readiness(policy, Facts(expected, tuple(shuffled), listed, T0, now))
    assert again == base
    # and the readiness is one of the three states, READY only with inputs
    assert base.readiness in Readiness and (base.readiness is not Readiness.READY or base.inputs)


# --- bad policy files ----------------------------------------------------------------------------------

GOOD = '[[policy]]\nname = "fallback"\norder = 1000\ncomplete_when = { expected_set_available = true }\n'


def _policy_with(body: str) -> str:
    return GOOD + '\n[[policy]]\nname = "site"\norder = 1\napplies_to.worklist_labels = ["X"]\n' + \
        textwrap.dedent(body)


BAD = [
    ("toml syntax", "[[policy]\nname = 'x'", "", "not valid TOML"),
    ("top-level unknown key", "polcy = 1\n" + GOOD, "polcy", "unknown key; did you mean 'policy'"),
    ("[policy] not an array", '[policy]\nname = "x"\n', "policy", "write [[policy]]"),
    ("schema version", "version = 2\n" + GOOD, "version", "version 1"),
    ("unknown policy key", _policy_with("complete_when = { expected_count = 1 }\ncomplete_whenn = 1\n"),
     "policy[1].complete_whenn", "did you mean 'complete_when'"),
    ("missing name", "[[policy]]\ncomplete_when = { expected_count = 1 }\n", "policy[0].name", "required"),
    ("missing complete_when", _policy_with(""), "policy[1].complete_when", "required"),
    ("unknown inputs key", _policy_with("inputs.accept = ['ONLINE']\ncomplete_when = { expected_count = 1 }\n"),
     "policy[1].inputs.accept", "unknown key"),
    ("settled wrong type", GOOD + GOOD.replace('"fallback"', '"b"').replace("1000", "5") +
     '[[policy]]\nname = "c"\napplies_to.worklist_labels = ["X"]\n'
     'complete_when = { all_of = [ { settled = "600" } ] }\n',
     "policy[2].complete_when.all_of[0].settled", "expected a number of seconds, got the string '600'"),
    ("settled zero", _policy_with("complete_when = { settled = 0 }\n"), "policy[1].complete_when.settled",
     "more than 0"),
    ("expected_count float", _policy_with("complete_when = { expected_count = 2.5 }\n"),
     "policy[1].complete_when.expected_count", "whole number"),
    ("expected_count zero", _policy_with("complete_when = { any_of = [{ expected_count = 0 }] }\n"),
     "policy[1].complete_when.any_of[0].expected_count", "at least 1"),
    ("condition with two keys", _policy_with("complete_when = { expected_count = 2, settled = 5 }\n"),
     "policy[1].complete_when", "exactly one key"),
    ("unknown condition", _policy_with("complete_when = { all_of = [{ expected_sets_available = true }] }\n"),
     "policy[1].complete_when.all_of[0].expected_sets_available", "did you mean 'expected_set_available'"),
    ("empty any_of", _policy_with("complete_when = { any_of = [] }\n"), "policy[1].complete_when.any_of",
     "empty list"),
    ("negated condition", _policy_with("complete_when = { expected_set_available = false }\n"),
     "policy[1].complete_when.expected_set_available", "expected_set_known = false"),
    ("bad on_downgrade", _policy_with('on_downgrade = "OFFLINE"\ncomplete_when = { expected_count = 1 }\n'),
     "policy[1].on_downgrade", "expected one of 'INCOMPLETE', 'UNAVAILABLE', 'ignore', got the string 'OFFLINE'"),
    ("on_downgrade case", _policy_with('on_downgrade = "IGNORE"\ncomplete_when = { expected_count = 1 }\n'),
     "policy[1].on_downgrade", "case-sensitive"),
    ("bad availability", _policy_with('inputs.accepted_availability = ["ONLINE", "ONLIEN"]\n'
                                      'complete_when = { expected_count = 1 }\n'),
     "policy[1].inputs.accepted_availability[1]", "expected one of 'ONLINE'"),
    ("nearline without online", _policy_with('inputs.accepted_availability = ["NEARLINE"]\n'
                                             'complete_when = { expected_count = 1 }\n'),
     "policy[1].inputs.accepted_availability", "the better ONLINE is not"),
    ("unavailable accepted", _policy_with('inputs.accepted_availability = ["ONLINE", "UNAVAILABLE"]\n'
                                          'complete_when = { expected_count = 1 }\n'),
     "policy[1].inputs.accepted_availability[1]", "cannot be accepted"),
    ("bad sop class uid", _policy_with('inputs.sop_class_uids = ["1.2.840.10008.5.1.4.1.1.02"]\n'
                                       'complete_when = { expected_count = 1 }\n'),
     "policy[1].inputs.sop_class_uids[0]", "not a valid UID"),
    ("transfer syntax as sop class", _policy_with('inputs.sop_class_uids = ["1.2.840.10008.1.2.1"]\n'
                                                  'complete_when = { expected_count = 1 }\n'),
     "policy[1].inputs.sop_class_uids[0]", "Transfer Syntax"),
    ("bad preferred AE", _policy_with('inputs.preferred_retrieve_aes = ["A\\\\B"]\n'
                                      'complete_when = { expected_count = 1 }\n'),
     "policy[1].inputs.preferred_retrieve_aes[0]", "not a valid AE title"),
    ("order not an integer", _policy_with('order = "first"\ncomplete_when = { expected_count = 1 }\n')
     .replace("order = 1\n", ""), "policy[1].order", "whole number"),
    ("workitem code without scheme",
     _policy_with('applies_to.scheduled_workitem_codes = [{ value = "3D" }]\ncomplete_when = { expected_count = 1 }\n'),
     "policy[1].applies_to.scheduled_workitem_codes[0].scheme", "required"),
    ("no fallback", GOOD.replace("order = 1000", 'applies_to.worklist_labels = ["X"]'), "policy", "no fallback"),
    ("unreachable policy", GOOD + '[[policy]]\nname = "late"\norder = 2000\napplies_to.worklist_labels = ["X"]\n'
     'complete_when = { expected_count = 1 }\n', "policy[1].order", "can never be selected"),
    ("bad regex", GOOD + '[[template]]\nname = "t"\nconditions.study_description = "(chest"\n'
     'creates.scheduled_workitem_code = { value = "A", scheme = "B", meaning = "C" }\n'
     'creates.procedure_step_label = "L"\n',
     "template[0].conditions.study_description", "not a valid regular expression"),
    ("bad priority", GOOD + '[[template]]\nname = "t"\n'
     'creates.scheduled_workitem_code = { value = "A", scheme = "B", meaning = "C" }\n'
     'creates.procedure_step_label = "L"\ncreates.priority = "URGENT"\n',
     "template[0].creates.priority", "'HIGH', 'MEDIUM', 'LOW'"),
    ("negative delay", GOOD + '[[template]]\nname = "t"\n'
     'creates.scheduled_workitem_code = { value = "A", scheme = "B", meaning = "C" }\n'
     'creates.procedure_step_label = "L"\ncreates.start_delay = -5\n',
     "template[0].creates.start_delay", "negative"),
    ("created code without meaning", GOOD + '[[template]]\nname = "t"\n'
     'creates.scheduled_workitem_code = { value = "A", scheme = "B" }\ncreates.procedure_step_label = "L"\n',
     "template[0].creates.scheduled_workitem_code.meaning", "required"),
    ("template without creates", GOOD + '[[template]]\nname = "t"\nconditions.modalities = ["CT"]\n',
     "template[0].creates", "required"),
    ("bad modality", GOOD + '[[template]]\nname = "t"\nconditions.modalities = ["ct"]\n'
     'creates.scheduled_workitem_code = { value = "A", scheme = "B", meaning = "C" }\n'
     'creates.procedure_step_label = "L"\n', "template[0].conditions.modalities[0]", "Modality"),
    ("duplicate policy name", GOOD + GOOD, "policy[1].name", "duplicate policy name 'fallback'"),
]


@pytest.mark.parametrize("content, key, reason", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_policy_file_names_file_key_and_reason(tmp_path, content, key, reason):
    path = tmp_path / "site.toml"
    path.write_text(content)
    with pytest.raises(PolicyError) as info:
        load_policies(tmp_path)
    err = info.value
    expected_file = str(tmp_path) if key == "policy" and reason == "no fallback" else str(path)
    assert (err.file, err.key) == (expected_file, key)
    assert reason in err.reason
    assert str(err).startswith(f"{expected_file}: {key + ': ' if key else ''}")
    assert isinstance(err, ConfigError)  # `wfm` reports it like any configuration error, server refuses to start


def test_duplicate_names_across_files_name_the_second_file(tmp_path):
    (tmp_path / "a.toml").write_text(GOOD)
    (tmp_path / "b.toml").write_text(GOOD.replace("order = 1000", "order = 5"))
    with pytest.raises(PolicyError) as info:
        load_policies(tmp_path)
    assert info.value.file == str(tmp_path / "b.toml") and info.value.key == "policy[0].name"
    assert "a.toml" in info.value.reason


def test_every_problem_is_reported_and_nothing_half_loaded(tmp_path):
    (tmp_path / "a_good.toml").write_text(GOOD)
    (tmp_path / "b_bad.toml").write_text(
        '[[policy]]\nname = "x"\napplies_to.worklist_labels = ["X"]\ncomplete_when = { settled = -1 }\n'
        '[[policy]]\nname = "y"\napplies_to.worklist_labels = ["Y"]\non_downgrade = 3\n'
        'complete_when = { expected_count = 1 }\n')
    with pytest.raises(PolicyError) as info:
        load_policies(tmp_path)
    assert [(p.key, p.file.endswith("b_bad.toml")) for p in info.value.problems] == [
        ("policy[0].complete_when.settled", True), ("policy[1].on_downgrade", True)]
    assert str(info.value).splitlines() == [str(p) for p in info.value.problems]


def test_missing_file_and_empty_directory(tmp_path):
    with pytest.raises(PolicyError, match="no \\*.toml policy file"):
        load_policies(tmp_path)
    with pytest.raises(PolicyError) as info:
        load_policies([tmp_path / "nope.toml"])
    assert info.value.file == str(tmp_path / "nope.toml") and "not found" in info.value.reason
    (tmp_path / "latin1.toml").write_bytes('version = 1 # \u00e9\n'.encode("latin-1"))
    with pytest.raises(PolicyError, match="UTF-8|TOML"):
        load_policies(tmp_path)


SEVERAL_TYPOS = """\
verison = 1
[[policy]]
name = "site"
ordr = 5
applies_to.worklist_labels = ["A", "B", "A"]
inputs.accepted_availability = ["ONLINE", "ONLIEN"]
on_downgrade = "IGNORE"
complete_when = { all_of = [ { settled = "600" }, { expected_sets_available = true } ] }

[[policy]]
name = "fallback"
complete_when = { expected_count = 0 }

[[template]]
name = "t"
conditions.modalities = ["ct"]
creates.scheduled_workitem_code = { value = "A", scheme = "B" }
creates.procedure_step_label = "L"
"""


def test_a_file_with_several_typos_reports_every_problem_in_one_run(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "site.toml"
    path.write_text(SEVERAL_TYPOS)
    result = subprocess.run([sys.executable, "-m", "workflow", "policies", "check", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [f"{path}: {key}: {reason}" for key, reason in [
        ("verison", "unknown key; did you mean 'version'? (allowed here: version, policy, template)"),
        ("policy[0].ordr", "unknown key; did you mean 'order'? (allowed here: name, description, order, "
                           "applies_to, inputs, complete_when, on_downgrade)"),
        ("policy[0].applies_to.worklist_labels[2]", "'A' is listed twice (also at policy[0].applies_to.worklist_labels[0])"),
        ("policy[0].inputs.accepted_availability[1]",
         "expected one of 'ONLINE', 'NEARLINE', 'OFFLINE', 'UNAVAILABLE', got the string 'ONLIEN'"),
        ("policy[0].on_downgrade", "expected one of 'INCOMPLETE', 'UNAVAILABLE', 'ignore', got the string 'IGNORE' "
                                   "(values are case-sensitive)"),
        ("policy[0].complete_when.all_of[0].settled", "expected a number of seconds, got the string '600'"),
        ("policy[0].complete_when.all_of[1].expected_sets_available",
         "unknown key; did you mean 'expected_set_available'? (allowed here: all_of, any_of, expected_set_available, "
         "expected_set_known, expected_count, listed_instances_available, settled)"),
        ("policy[1].complete_when.expected_count", "must be at least 1, got 0"),
        ("template[0].conditions.modalities[0]", "'ct' is not a Modality code string (upper-case letters, digits, "
                                                 "space or underscore, at most 16), e.g. 'CT'"),
        ("template[0].creates.scheduled_workitem_code.meaning", "required key is missing"),
    ]]


# --- the modality a study's SOP classes imply -----------------------------------------------------------

def _template(conditions: str):
    return loads_policies(GOOD + '[[template]]\nname = "t"\n' + conditions +
                          '\ncreates.scheduled_workitem_code = { value = "A", scheme = "B", meaning = "C" }\n'
                          'creates.procedure_step_label = "L"\n').templates[0]


def test_a_modality_condition_uses_the_mpps_else_the_modality_the_sop_classes_imply():
    from pydicom.uid import EnhancedCTImageStorage, SecondaryCaptureImageStorage

    ct = _template('conditions.modalities = ["CT"]')
    only_ians = StudyFacts("1.5", sop_class_uids=frozenset({EnhancedCTImageStorage, SR}))
    [check] = ct.check(only_ians)
    assert check.held and check.found == ("CT",)
    assert check.text == "modality ['CT'] (implied by the SOP classes of its instances) is in ['CT']"
    # an MPPS that names a modality is believed over the SOP classes
    named = StudyFacts("1.5", modalities=frozenset({"MR"}), sop_class_uids=frozenset({CT}))
    assert ct.mismatches(named) == ("modality ['MR'] (named by the study's MPPS) not in ['CT']",)
    # Secondary Capture implies no modality: the condition cannot hold, and says why
    sc = StudyFacts("1.5", sop_class_uids=frozenset({SecondaryCaptureImageStorage}))
    assert ct.mismatches(sc) == ("modality unknown (no MPPS names one and no SOP class of its instances implies "
                                 "one) not in ['CT']",)


def test_every_condition_of_a_template_is_checked_with_the_facts():
    t = _template('conditions = { sop_class_uids = ["1.2.840.10008.5.1.4.1.1.2"], calling_ae_titles = ["CT1"], '
                  'procedure_codes = [{ value = "P1", scheme = "99L" }], study_description = "(?i)head" }')
    study = StudyFacts("1.5", sop_class_uids=frozenset({SR}), calling_ae_titles=frozenset({"CT1"}),
                       procedure_codes=frozenset({("P2", "99L")}), study_description="Head CT")
    assert [(c.condition, c.held) for c in t.check(study)] == [
        ("sop_class_uids", False), ("calling_ae_titles", True), ("procedure_codes", False), ("study_description", True)]
    assert t.mismatches(study) == (f"SOP class ['{SR}'] not in ['{CT}']", "procedure code ['(P2, 99L)'] not in ['(P1, 99L)']")
    assert t.check(study)[3].as_dict() == {"condition": "study_description", "held": True, "wanted": ["(?i)head"],
                                           "found": ["Head CT"], "text": "study description 'Head CT' matches /(?i)head/"}


def test_the_implied_modality_table_names_storage_sop_classes_of_that_modality():
    from pydicom.uid import UID_dictionary
    from pynetdicom.service_class import StorageServiceClass
    from pynetdicom.sop_class import uid_to_service_class

    from workflow.readiness.rules.policy.modalities import IMPLIED_MODALITY, NO_MODALITY

    for uid in (*IMPLIED_MODALITY, *NO_MODALITY):
        assert UID_dictionary[uid][1] == "SOP Class" and uid_to_service_class(uid) is StorageServiceClass, uid
    assert not set(NO_MODALITY) & set(IMPLIED_MODALITY)
    wanted = {"CT Image Storage": "CT", "Enhanced CT Image Storage": "CT", "MR Image Storage": "MR",
              "Digital X-Ray Image Storage - For Presentation": "DX", "Ultrasound Image Storage": "US",
              "Digital Mammography X-Ray Image Storage - For Presentation": "MG"}
    by_name = {UID_dictionary[uid][0]: modality for uid, modality in IMPLIED_MODALITY.items()}
    assert {name: by_name[name] for name in wanted} == wanted
    assert "Secondary Capture Image Storage" not in by_name


@settings(max_examples=150, deadline=None)
@given(history=st.lists(st.tuples(st.booleans(), _instance), max_size=12),
       expected=st.none() | st.frozensets(st.sampled_from([f"1.{i}" for i in range(8)]), max_size=5),
       listed=st.frozensets(st.sampled_from([f"1.{i}" for i in range(8)]), max_size=3),
       minutes=st.integers(0, 5), which=st.integers(0, len(_policies) - 1))
def test_choices_kept_one_change_at_a_time_evaluate_as_a_fresh_read(history, expected, listed, minutes, which):
    """Incremental evaluation: `Choices` fed a history of changed and dropped instances (as a pass
    reads them) evaluate exactly as the facts of the instances that remain, read whole."""
    policy = _policies[which]()
    now = T0 + timedelta(minutes=minutes)
    choices, remaining = Choices(policy.inputs, expected=expected), {}
    for dropped, inst in history:
        if dropped:
            choices.drop(inst.sop_instance_uid)
            remaining.pop(inst.sop_instance_uid, None)
        else:
            choices.put(inst)
            remaining[inst.sop_instance_uid] = inst
    facts = Facts(expected, tuple(remaining.values()), listed, T0, now)
    assert evaluate_readiness(policy, facts, choices) == evaluate_readiness(policy, facts)
