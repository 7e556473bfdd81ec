"""`wfm policies init` / `check` and `wfm explain`: a site's readiness policies, and why a workitem is
(not) READY or a template did (not) create one."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from workflow.cli.common import settings_of, engine_of


def cmd_policies_check(args) -> int:
    from workflow.readiness.rules.policy import PolicyError, load_policies
    from workflow.store.resources import policies_location

    if len(args.paths) == 1:
        paths = Path(args.paths[0])  # a folder or one file
    else:
        paths = [Path(p) for p in args.paths] or policies_location(settings_of(args).policies)
    try:
        policy_set = load_policies(paths)
    except PolicyError as exc:
        for problem in exc.problems or [exc]:
            print(f"{problem.file}: {problem.key or '(file)'}: {problem.reason}", file=sys.stderr)
        return 2
    print(f"ok: {len(policy_set.policies)} policies, {len(policy_set.templates)} templates "
          f"({', '.join(str(s) for s in policy_set.sources)})")
    return 0


def cmd_policies_init(args) -> int:
    """Copy the shipped policy files into a folder of the site's own, never over an existing file."""
    from workflow.store.resources import policies_location

    shipped = policies_location("")
    target = Path(args.dir).resolve()
    files = [f for f in sorted(shipped.iterdir()) if f.suffix == ".toml" or f.name == "README.md"]
    if target.exists() and not target.is_dir():
        print(f"wfm: {target} is a file, not a folder", file=sys.stderr)
        return 1
    taken = [target / f.name for f in files if (target / f.name).exists()]
    if taken:
        for path in taken:
            print(f"wfm: {path} exists; policies init never overwrites a file (move it away, or choose "
                  "another folder)", file=sys.stderr)
        return 1
    target.mkdir(parents=True, exist_ok=True)
    for f in files:
        shutil.copyfile(f, target / f.name)
    print(f"copied {', '.join(f.name for f in files)} to {target}")
    print("edit them there, check them with `wfm policies check`, and put this line in the configuration file "
          "(or set WFM_POLICIES); a running server reads them again on SIGHUP:")
    print(f"policies = {json.dumps(str(target))}")
    return 0


def cmd_explain(args) -> int:
    from workflow.readiness.service import ReadinessService
    from workflow.readiness.site_policies import load_site_policies
    from workflow.kernel.clock import utcnow

    if (args.uid is None) == (args.study is None):
        print("wfm explain: give a workitem UID or --study STUDY_UID (one of them)", file=sys.stderr)
        return 2
    service = ReadinessService(engine_of(args), load_site_policies(settings_of(args).policies), None)
    if args.study is not None:
        return _explain_study(service, args.study, args.json)
    why = service.explain(args.uid, utcnow())
    if why is None:
        print(f"unknown workitem: {args.uid}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(why, indent=2))
        return 0
    print(f"Workitem {why['workitem_uid']}: {why['procedure_step_state']}, Input Readiness "
          f"{why['input_readiness_state'] or '-'}")
    if "reason" in why:
        print(why["reason"])
        return 0
    print(f"Policy: {why['policy']} (evaluates to {why['evaluated_readiness']} now)")
    expected = why["expected"]
    print("Expected set: " + ("none known (no COMPLETED MPPS)" if expected is None else f"{len(expected)} instances"))
    print(f"Available as inputs: {len(why['available'])}; missing: {len(why['missing'])}"
          + (f" ({len(why['not_available'])} announced but not available)" if why["not_available"] else ""))
    for uid in why["missing"][:20]:
        print(f"  missing {uid}")
    for reason in why["reasons"]:
        print(f"- {reason}")
    if why["settle_timer_due_at"]:
        print(f"Settle timer due at {why['settle_timer_due_at']}")
    if why.get("note"):
        print(why["note"])
    return 0


def _explain_study(service, study_uid: str, as_json: bool) -> int:
    from workflow.readiness.rules.policy.words import sop_class_text

    why = service.explain_study(study_uid)
    if why is None:
        print(f"unknown study: {study_uid}", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps(why, indent=2))
        return 0
    facts = why["facts"]
    print(f"Study {study_uid}")
    print(f"- modality: {', '.join(facts['modalities']) or 'unknown'} ({facts['modality_source']})")
    print(f"- SOP classes: {', '.join(sop_class_text(u) for u in facts['sop_class_uids']) or 'none'}")
    print(f"- calling AEs: {', '.join(facts['calling_ae_titles']) or 'none'}")
    print(f"- procedure codes: {', '.join(f'({v}, {s})' for v, s in facts['procedure_codes']) or 'none'}")
    print(f"- study description: {facts['study_description'] or 'none'}")
    if not why["templates"]:
        print("No template is enabled: notifications never create workitems.")
    for t in why["templates"]:
        outcome = {"created": f"created workitem {t['workitem_uid']} ({t['procedure_step_state']})",
                   "would create": f"would create workitem {t['workitem_uid']} (at the study's next evaluation)",
                   "does not fire": "creates no workitem"}[t["outcome"]]
        print(f"Template {t['template']} ({t['source']}): {outcome}")
        for c in t["conditions"]:
            print(f"  {'holds' if c['held'] else 'FAILS'}: {c['condition']}: {c['text']}")
        if not t["conditions"]:
            print("  no conditions: it fires for every study")
    return 0


def add_parsers(sub, common) -> None:
    p = sub.add_parser("explain", parents=[common],
                       help="why a workitem is or is not READY, or (--study) why templates did or did not fire")
    p.add_argument("uid", nargs="?", help="a workitem's SOP Instance UID")
    p.add_argument("--study", metavar="STUDY_UID", help="explain each template for this study instead")
    p.add_argument("--json", action="store_true", help="as JSON")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("policies", help="readiness policies")
    psub = p.add_subparsers(dest="policies_command", required=True)
    p = psub.add_parser("init", help="copy the shipped policy files into a folder of your own, to edit there")
    p.add_argument("dir", help="the folder (created if missing; existing files are never overwritten)")
    p.set_defaults(func=cmd_policies_init)
    p = psub.add_parser("check", parents=[common], help="validate policy files (file, key and reason)")
    p.add_argument("paths", nargs="*", help="policy files or a folder (default: the configured policies)")
    p.set_defaults(func=cmd_policies_check)
