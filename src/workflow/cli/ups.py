"""`wfm ups list|show` and `wfm events`: the worklist and the event reports it owes (read from the
database); `wfm ups create|claim|complete|cancel`: a scheduler's and a performer's requests to any
UPS SCP. The SCU commands print one status line per request on stderr, and the value a script wants
(the workitem UID, the Transaction UID) alone on stdout. Exit status: 0 success, 1 bad input, 2 no
association, 3 a request failed."""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

from workflow.cli.common import (BadInput, add_peer_arguments, engine_of, peer_of, print_table,
                                 scu_command, settings_of)

PRIORITIES = ("HIGH", "MEDIUM", "LOW")
READINESS = ("READY", "INCOMPLETE", "UNAVAILABLE")


def cmd_ups_list(args) -> int:
    from workflow.ups.listing import list_workitems, readable_datetime

    rows = list_workitems(engine_of(args), args.state, args.limit)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = [("SOP INSTANCE UID", "STATE", "READINESS", "PRIORITY", "START", "WORKLIST", "LABEL")]
    table += [(r["sop_instance_uid"], r["procedure_step_state"], r["input_readiness_state"] or "-",
               r["priority"] or "-", readable_datetime(r["scheduled_start_datetime"]), r["worklist_label"] or "-",
               r["procedure_step_label"] or "-") for r in rows]
    print_table(table)
    return 0


def cmd_ups_show(args) -> int:
    from workflow.ups.listing import describe, show_workitem

    ds = show_workitem(engine_of(args), settings_of(args), args.uid)
    if ds is None:
        print(f"unknown workitem: {args.uid}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(ds, indent=2))
    else:
        print("\n".join(describe(ds)))
    return 0


def cmd_events(args) -> int:
    from workflow.ups.outbox import Outbox

    rows = Outbox(engine_of(args), settings_of(args)).listing(include_delivered=args.all)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = [("ID", "WORKITEM", "EVENT", "SUBSCRIBER", "STATUS", "ATTEMPTS", "NEXT ATTEMPT", "LAST ERROR")]
    table += [(str(r["id"]), r["workitem_uid"], str(r["event_type_id"]), r["subscriber"], r["status"],
               str(r["attempts"]), r["next_attempt_at"] or "-", (r["last_error"] or "-")[:60]) for r in rows]
    print_table(table)
    return 0


# --- SCU commands ---------------------------------------------------------------------------------------

def cmd_ups_create(args) -> list:
    from pydicom.uid import generate_uid
    from workflow.ups.dimse.scu import UpsClient, code, dicom_datetime, new_workitem, request_item, workitem_file

    if args.accession and not args.study_uid:
        raise BadInput("--accession needs --study-uid (the request names both)")
    values = {
        "PatientName": args.patient_name, "PatientID": args.patient_id, "PatientBirthDate": args.birth_date,
        "PatientSex": args.sex, "StudyInstanceUID": args.study_uid,
        "ScheduledProcedureStepStartDateTime": dicom_datetime(args.start) if args.start else None,
        "ScheduledProcedureStepPriority": args.priority, "ProcedureStepLabel": args.label,
        "WorklistLabel": args.worklist_label, "InputReadinessState": args.readiness,
        "CommentsOnTheScheduledProcedureStep": args.comments,
        "ScheduledStationNameCodeSequence": [code(args.station)] if args.station else None,
        "ScheduledWorkitemCodeSequence": [code(args.workitem_code, "DCM")] if args.workitem_code else None,
        "ReferencedRequestSequence": [request_item(args.study_uid, args.accession)] if args.study_uid else None,
    }
    ds = new_workitem(workitem_file(args.file) if args.file else None, **values)
    uid = args.uid or generate_uid()
    with UpsClient.open(peer_of(args)) as client:
        step = client.create(ds, uid)
    if step.answer.ok:
        print(uid)
    return [step]


def cmd_ups_claim(args) -> list:
    from workflow.ups.dimse.scu import UpsClient

    with UpsClient.open(peer_of(args)) as client:
        steps, transaction_uid = client.claim(args.uid, args.transaction_uid)
    if not steps[-1].answer.ok:
        return steps
    path = Transactions.location()
    Transactions(path).save(args.uid, transaction_uid, peer_of(args))
    print(transaction_uid)
    return steps + [f"Transaction UID saved in {path} for `wfm ups complete|cancel {args.uid}`"]


def cmd_ups_complete(args) -> list:
    from workflow.ups.dimse.scu import UpsClient, code, dicom_datetime

    saved = Transactions(Transactions.location())
    transaction_uid = args.transaction_uid or saved.transaction_uid(args.uid)
    if not transaction_uid:
        raise BadInput(f"no Transaction UID for {args.uid}: give --transaction-uid, or claim it with "
                       f"`wfm ups claim` first (saved in {saved.path})")
    started = saved.claimed_at(args.uid)
    with UpsClient.open(peer_of(args)) as client:
        steps = client.complete(args.uid, transaction_uid, started=dicom_datetime(started) if started else None,
                                station=code(args.station) if args.station else None,
                                workitem_code=code(args.workitem_code, "DCM") if args.workitem_code else None,
                                performer=args.performer)
    if steps[-1].answer.ok:
        saved.forget(args.uid)
    return steps


def cmd_ups_cancel(args) -> list:
    from workflow.ups.dimse.scu import UpsClient, code

    saved = Transactions(Transactions.location())
    transaction_uid = args.transaction_uid or saved.transaction_uid(args.uid)
    with UpsClient.open(peer_of(args)) as client:
        steps = client.cancel(args.uid, transaction_uid, args.reason,
                              code(args.reason_code, "DCM") if args.reason_code else None)
    if steps[-1].answer.ok and transaction_uid:
        saved.forget(args.uid)
    elif steps[-1].answer.ok:
        steps.append("cancellation requested: a SCHEDULED workitem is CANCELED by the SCP, one IN PROGRESS "
                     "only if its performer agrees")
    return steps


class Transactions:
    """The Transaction UIDs of the workitems this user claimed, so that `complete` and `cancel` find
    them: a JSON file readable by the user only."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @staticmethod
    def location() -> Path:
        """$XDG_STATE_HOME/wfm/transactions.json, by default ~/.local/state/wfm/transactions.json."""
        base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
        return Path(base) / "wfm" / "transactions.json"

    def _read(self) -> dict:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise BadInput(f"{self.path}: cannot read the saved Transaction UIDs: {exc}") from None

    def _write(self, data: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(data, indent=2), encoding="utf-8")
        temporary.chmod(0o600)  # a Transaction UID is the lock on the workitem
        temporary.replace(self.path)

    def save(self, uid: str, transaction_uid: str, peer) -> None:
        data = self._read()
        data[uid] = {"transaction_uid": transaction_uid, "scp": str(peer),
                     "claimed_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        self._write(data)

    def transaction_uid(self, uid: str) -> str | None:
        return self._read().get(uid, {}).get("transaction_uid")

    def claimed_at(self, uid: str) -> datetime | None:
        text = self._read().get(uid, {}).get("claimed_at")
        return datetime.fromisoformat(text) if text else None

    def forget(self, uid: str) -> None:
        data = self._read()
        if data.pop(uid, None) is not None:
            self._write(data)


def add_parsers(sub, common) -> None:
    p = sub.add_parser("ups", help="the UPS worklist")
    usub = p.add_subparsers(dest="ups_command", required=True)
    p = usub.add_parser("list", parents=[common], help="workitems, most recently scheduled first")
    p.add_argument("--state", choices=["SCHEDULED", "IN PROGRESS", "COMPLETED", "CANCELED"],
                   help="only workitems in this state")
    p.add_argument("--limit", type=int, default=1000, help="at most this many")
    p.add_argument("--json", action="store_true", help="as JSON, times in ISO 8601")
    p.set_defaults(func=cmd_ups_list)
    p = usub.add_parser("show", parents=[common], help="one workitem exactly as N-GET returns it")
    p.add_argument("uid", help="the workitem's SOP Instance UID")
    p.add_argument("--json", action="store_true", help="as DICOM JSON")
    p.set_defaults(func=cmd_ups_show)

    def scu(name: str, text: str, func):
        p = usub.add_parser(name, parents=[common], help=text, description=text)
        add_peer_arguments(p, what="UPS SCP")
        p.set_defaults(func=scu_command(f"ups {name}", func))
        return p

    p = scu("create", "schedule a workitem at any UPS SCP (N-CREATE); prints its UID", cmd_ups_create)
    p.add_argument("--file", help="start from this workitem: DICOM JSON (*.json) or TOML with DICOM keywords; "
                                  "the options below override it")
    p.add_argument("--uid", help="the workitem's SOP Instance UID (default: a new one)")
    p.add_argument("--patient-name", help="Patient's Name, e.g. Doe^Jane")
    p.add_argument("--patient-id", help="Patient ID")
    p.add_argument("--birth-date", help="Patient's Birth Date, YYYYMMDD")
    p.add_argument("--sex", choices=["M", "F", "O"], help="Patient's Sex")
    p.add_argument("--study-uid", help="Study Instance UID of the study the workitem works on")
    p.add_argument("--accession", help="Accession Number (with --study-uid: the Referenced Request)")
    p.add_argument("--start", help="scheduled start: ISO 8601 (2026-12-05T14:30[+01:00]), a DICOM DT, or now "
                                   "(default: now)")
    p.add_argument("--priority", choices=PRIORITIES, help="Scheduled Procedure Step Priority (default: MEDIUM)")
    p.add_argument("--label", help="Procedure Step Label, what is to be done (default: Workitem)")
    p.add_argument("--worklist-label", help="Worklist Label (default: the SCP's)")
    p.add_argument("--station", metavar="CODE", help="Scheduled Station Name Code: VALUE[^SCHEME[^MEANING]], "
                                                     "scheme 99LOCAL when left out")
    p.add_argument("--workitem-code", metavar="CODE", help="Scheduled Workitem Code: VALUE[^SCHEME[^MEANING]], "
                                                           "e.g. 110005^DCM^Interpretation (scheme DCM when left out)")
    p.add_argument("--readiness", choices=READINESS, help="Input Readiness State (default: INCOMPLETE: the "
                                                          "server's readiness policies make it READY)")
    p.add_argument("--comments", help="Comments on the Scheduled Procedure Step")

    p = scu("claim", "take a workitem: IN PROGRESS with a new Transaction UID, printed and saved for complete and "
                     "cancel in $XDG_STATE_HOME/wfm/transactions.json (by default ~/.local/state/wfm/)", cmd_ups_claim)
    p.add_argument("uid", help="the workitem's SOP Instance UID")
    p.add_argument("--transaction-uid", help="use this Transaction UID (default: a new one)")

    p = scu("complete", "finish a claimed workitem: Performed Procedure Sequence (N-SET), then COMPLETED",
            cmd_ups_complete)
    p.add_argument("uid", help="the workitem's SOP Instance UID")
    p.add_argument("--transaction-uid", help="default: the one `wfm ups claim` saved")
    p.add_argument("--station", metavar="CODE", help="Performed Station Name Code (default: the scheduled one, "
                                                     "else our AE title)")
    p.add_argument("--workitem-code", metavar="CODE", help="Performed Workitem Code (default: the scheduled one)")
    p.add_argument("--performer", help="Human Performer's Name")

    p = scu("cancel", "cancel a workitem: your own claimed one (CANCELED), or ask for another's cancellation",
            cmd_ups_cancel)
    p.add_argument("uid", help="the workitem's SOP Instance UID")
    p.add_argument("--transaction-uid", help="default: the one `wfm ups claim` saved; none: a request to cancel")
    p.add_argument("--reason", help="Reason For Cancellation (text)")
    p.add_argument("--reason-code", metavar="CODE", help="Discontinuation Reason Code (default: "
                                                         "110513^DCM^Discontinued for unspecified reason)")

    p = sub.add_parser("events", parents=[common], help="UPS event reports owed to subscribers")
    p.add_argument("--pending", action="store_true", help="only events not yet delivered (the default)")
    p.add_argument("--all", action="store_true", help="delivered events too")
    p.add_argument("--json", action="store_true", help="as JSON")
    p.set_defaults(func=cmd_events)
