"""A loaded policy set in words (Markdown), for the conformance statement: PS3.4 R.1.1 asks an IAN
SCP to document how notifications drive its workflow."""

from __future__ import annotations

from workflow.readiness.rules.policy.modalities import IMPLIED_MODALITY, NO_MODALITY
from workflow.readiness.rules.policy.model import (AllOf, AnyOf, Condition, ExpectedCount, ExpectedSetAvailable,
                                                   ExpectedSetKnown, InputRules, ListedInstancesAvailable,
                                                   OnDowngrade, Policy)
from workflow.readiness.rules.policy.policy_set import PolicySet
from workflow.readiness.rules.policy.templates import Template
from workflow.readiness.rules.policy.words import seconds_text, sop_class_text


def _words(cond: Condition, rules: InputRules, depth: int = 0) -> list[str]:
    pad, accepted = "  " * depth, rules.accepted_words
    if isinstance(cond, (AllOf, AnyOf)):
        head = "all of:" if isinstance(cond, AllOf) else "any of:"
        lines = [f"{pad}- {head}"]
        for c in cond.conditions:
            lines += _words(c, rules, depth + 1)
        return lines
    if isinstance(cond, ExpectedSetAvailable):
        text = ("every instance of the study's expected set (the union of the Performed Series Sequence of "
                f"its COMPLETED MPPS) is available {accepted} at some Retrieve AE Title")
    elif isinstance(cond, ExpectedSetKnown):
        text = ("an expected set is known (a COMPLETED MPPS of the study has been received)" if cond.known
                else "no expected set is known (no COMPLETED MPPS of the study has been received)")
    elif isinstance(cond, ExpectedCount):
        text = f"at least {cond.count} instance{'s' if cond.count != 1 else ''} are available {accepted}"
    elif isinstance(cond, ListedInstancesAvailable):
        text = ("every instance already listed in the workitem's Input Information Sequence is available "
                f"{accepted}")
    else:
        text = (f"no IAN for the study has been received for {seconds_text(cond.seconds)} and every known "
                f"instance of the study (except those UNAVAILABLE everywhere) is available {accepted}")
    return [f"{pad}- {text}"]


def _describe_policy(p: Policy) -> str:
    sel, rules = p.applies_to, p.inputs
    who = []
    if sel.accession_numbers:
        who.append("Accession Number matching " + " or ".join(f"`{a}`" for a in sel.accession_numbers))
    if sel.scheduled_workitem_codes:
        who.append("Scheduled Workitem Code " + " or ".join(str(c) for c in sel.scheduled_workitem_codes))
    if sel.worklist_labels:
        who.append("Worklist Label matching " + " or ".join(f"`{w}`" for w in sel.worklist_labels))
    link = "the same Study Instance UID"
    if sel.link_by_accession_number:
        link += " or an Accession Number named by one of the study's MPPS"
    applies = (f"workitems with {link}" + (" and " + " and ".join(who) if who else
                                           " (every workitem not taken by an earlier policy)"))
    classes = ("instances of any SOP Class" if not rules.sop_class_uids else
               "instances of " + ", ".join(sop_class_text(u) for u in rules.sop_class_uids))
    restrict = (" When an expected set is known, only its instances are inputs."
                if rules.restrict_to_expected_set else
                " Instances outside the expected set are inputs as well.")
    prefer = (" The Retrieve AE Title named is chosen in this order of preference: "
              + ", ".join(f"`{a}`" for a in rules.preferred_retrieve_aes) + ", then any other; between "
              "equals, the location with the best availability, then the most recently notified one."
              if rules.preferred_retrieve_aes else
              " The Retrieve AE Title named is the location with the best availability, then the most "
              "recently notified one.")
    downgrade = {
        OnDowngrade.INCOMPLETE: "a SCHEDULED workitem that was READY goes back to INCOMPLETE",
        OnDowngrade.UNAVAILABLE: "a SCHEDULED workitem that was READY goes to UNAVAILABLE",
        OnDowngrade.IGNORE: "a SCHEDULED workitem that was READY stays READY with its Input Information unchanged",
    }[p.on_downgrade]
    lines = [f"#### Policy `{p.name}` (order {p.order}; {p.source})", ""]
    if p.description:
        lines += [p.description, ""]
    lines += [
        f"- **Applies to:** {applies}.",
        f"- **Inputs:** {classes}, with a location {rules.accepted_words}.{restrict}{prefer}",
        "- **Complete (READY) when:**",
        *["  " + line for line in _words(p.complete_when, rules)],
        f"- **On a downgrade** (an input OFFLINE or UNAVAILABLE, or an MPPS expecting instances not yet "
        f"available): {downgrade}. IN PROGRESS, COMPLETED and CANCELED workitems are never changed.",
        "",
    ]
    return "\n".join(lines)


def _describe_template(t: Template) -> str:
    c, k = t.conditions, t.creates
    when = []
    if c.modalities:
        when.append("Modality " + " or ".join(c.modalities) + " (see the modality rule below)")
    if c.sop_class_uids:
        when.append("an instance of " + " or ".join(sop_class_text(u) for u in c.sop_class_uids))
    if c.calling_ae_titles:
        when.append("announced by calling AE " + " or ".join(f"`{a}`" for a in c.calling_ae_titles))
    if c.procedure_codes:
        when.append("Procedure Code " + " or ".join(str(p) for p in c.procedure_codes))
    if c.study_description is not None:
        when.append(f"Study Description matching the regular expression `{c.study_description}`")
    lines = [f"#### Template `{t.name}` ({t.source})", ""]
    if t.description:
        lines += [t.description, ""]
    lines += [
        "- **When** a study becomes available with " + (" and ".join(when) if when else "any content") + ":",
        f"  a SCHEDULED workitem is created with Scheduled Workitem Code {k.scheduled_workitem_code}, "
        f"Procedure Step Label \"{k.procedure_step_label}\", priority {k.priority.value}, Worklist Label "
        + (f"\"{k.worklist_label}\"" if k.worklist_label else "the server's default")
        + (f", Scheduled Station Name Code {k.station_name_code}" if k.station_name_code else "")
        + f" and Scheduled Procedure Step Start DateTime = now + {seconds_text(k.start_delay)}.",
        "- At most one workitem per study and template (its SOP Instance UID is derived from both).",
        "",
    ]
    return "\n".join(lines)


def describe_modality_rule() -> str:
    """How a template's `modalities` condition learns a study's modality, with the table of SOP classes."""
    by_modality: dict[str, list[str]] = {}
    for uid, modality in IMPLIED_MODALITY.items():
        by_modality.setdefault(modality, []).append(uid)
    rows = [f"| {modality} | {', '.join(sop_class_text(u) for u in uids)} |"
            for modality, uids in sorted(by_modality.items())]
    return "\n".join([
        "#### The modality of a study (template conditions)",
        "",
        "A template's `modalities` condition uses the Modality (0008,0060) of the study's MPPS. When no MPPS "
        "of the study names a modality (modalities that send no MPPS), it uses the modalities the SOP Classes "
        "of the study's instances imply, as announced by IANs: a SOP Class implies a modality when its IOD "
        "requires that modality. So a template conditioned on CT fires from IANs of CT Image Storage "
        "instances alone. A study whose MPPS names no modality and whose SOP Classes imply none has no "
        "known modality and matches no `modalities` condition; `wfm explain --study` shows the facts.",
        "",
        "| Modality | implied by the SOP Classes |",
        "|---|---|",
        *rows,
        "",
        "Imply no modality (their IOD allows any): " + ", ".join(sop_class_text(u) for u in NO_MODALITY)
        + ", and every SOP Class not listed above.",
        "",
    ])


def describe(policy_set: PolicySet) -> str:
    """Markdown describing how notifications drive workflow (PS3.4 R.1.1), for the conformance statement."""
    out = [
        "### Workflow policies",
        "",
        "Instance Availability Notifications and MPPS drive the Input Information Sequence and Input "
        "Readiness State of UPS workitems as the site's policy files say"
        + (f" (loaded from {', '.join(f'`{s}`' for s in policy_set.sources)})" if policy_set.sources else "")
        + ". For each SCHEDULED workitem of a study that changes, the first policy below whose selector "
        "matches the workitem applies.",
        "",
        "- Readiness: READY when the policy's completion condition holds and at least one instance is an "
        "input; UNAVAILABLE when every instance the condition needs has been announced but some have no "
        "location at an accepted availability; INCOMPLETE otherwise (in particular while an instance the "
        "condition needs has not been announced by any IAN, or no MPPS is known and the settle time has "
        "not passed). Every IAN for the study restarts a settle time.",
        "- The expected set of a study is the union of the Performed Series Sequence of its COMPLETED MPPS.",
        "- The result depends only on what is known, never on the order in which notifications arrived.",
        "- Workitems IN PROGRESS, COMPLETED or CANCELED are never changed by a notification.",
        "",
    ]
    out += [_describe_policy(p) for p in policy_set.policies]
    if policy_set.templates:
        out += [_describe_template(t) for t in policy_set.templates]
    else:
        out += ["No template is enabled: notifications never create workitems.", ""]
    out.append(describe_modality_rule())
    return "\n".join(out)
