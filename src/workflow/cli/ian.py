"""`wfm ian send`: IANs for DICOM files, to any IAN SCP."""

from __future__ import annotations

import sys

from workflow.cli.common import add_peer_arguments

def cmd_ian_send(args) -> int:
    from workflow.ian.dimse.scu import AssociationFailed, build_ians, scan, send_ians, url_template_problem
    from workflow.kernel.attributes import is_ae_title

    problems = [f"--{flag} {value!r} is not a valid AE title (1-16 characters, no backslash)"
                for flag, values in (("retrieve-ae", args.retrieve_ae), ("aec", [args.aec]), ("aet", [args.aet]))
                for value in values if not is_ae_title(value)]
    if args.retrieve_url and (problem := url_template_problem(args.retrieve_url)):
        problems.append(f"--retrieve-url: {problem}")
    if problems:
        for problem in problems:
            print(f"wfm ian send: {problem}", file=sys.stderr)
        return 2
    ians = build_ians(scan(args.paths), args.availability, args.retrieve_ae, args.retrieve_url, args.pps_uid)
    if not ians:
        print("no DICOM instances found in the given paths", file=sys.stderr)
        return 1
    try:
        results = send_ians(ians, args.host, args.port, args.aec, args.aet, args.timeout)
    except (AssociationFailed, OSError) as exc:
        print(f"wfm ian send: {exc}", file=sys.stderr)
        return 2
    for r in results:
        status = "no response" if r.status is None else f"0x{r.status:04X}"
        comment = f" ({r.error_comment})" if r.error_comment else ""
        print(f"study {r.study_instance_uid}: {r.instances} instances, IAN {r.sop_instance_uid}: "
              f"status {status}{comment}")
    return 0 if all(r.ok for r in results) else 3


def add_parsers(sub, common) -> None:
    p = sub.add_parser("ian", help="Instance Availability Notification tools")
    isub = p.add_subparsers(dest="ian_command", required=True)
    p = isub.add_parser("send", parents=[common], help="send IANs for DICOM files to any IAN SCP")
    p.add_argument("paths", nargs="+", help="DICOM files or folders (searched recursively)")
    add_peer_arguments(p, what="IAN SCP")
    p.add_argument("--availability", default="ONLINE", choices=["ONLINE", "NEARLINE", "OFFLINE", "UNAVAILABLE"],
                   help="Instance Availability of every instance")
    p.add_argument("--retrieve-ae", action="append", required=True,
                   help="Retrieve AE Title where the instances are (repeat for several)")
    p.add_argument("--retrieve-url", help="Retrieve URL template with {study}, {series}, {instance}")
    p.add_argument("--pps-uid", help="SOP Instance UID of the MPPS to reference")
    p.set_defaults(func=cmd_ian_send)
