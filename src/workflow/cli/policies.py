"""`wfm policies check` and `wfm explain`: readiness policies and why a workitem is (not) READY."""

from __future__ import annotations

import json
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


def cmd_explain(args) -> int:
    from workflow.readiness.rules.policy import load_policies
    from workflow.kernel.clock import utcnow
    from workflow.readiness.service import ReadinessService
    from workflow.store.resources import policies_location

    settings = settings_of(args)
    service = ReadinessService(engine_of(args), load_policies(policies_location(settings.policies)), None)
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


def add_parsers(sub, common) -> None:
    p = sub.add_parser("explain", parents=[common], help="why a workitem is or is not READY")
    p.add_argument("uid")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("policies", help="readiness policies")
    psub = p.add_subparsers(dest="policies_command", required=True)
    p = psub.add_parser("check", parents=[common], help="validate policy files (file, key and reason)")
    p.add_argument("paths", nargs="*", help="policy files or a folder (default: the configured policies)")
    p.set_defaults(func=cmd_policies_check)
