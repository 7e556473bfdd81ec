"""`wfm mpps send`: a modality's MPPS for DICOM files, to any MPPS SCP (one per study: N-CREATE IN
PROGRESS, then N-SET COMPLETED or DISCONTINUED with the Performed Series Sequence). Each request's
status goes to stderr, each MPPS SOP Instance UID to stdout."""

from __future__ import annotations


from workflow.cli.common import BadInput, add_peer_arguments, peer_of, scu_command


def cmd_mpps_send(args) -> list:
    from workflow.mpps.dimse.scu import MppsClient, read_studies

    studies = read_studies(args.paths)
    if not studies:
        raise BadInput("no DICOM instances found in the given paths")
    steps = []
    with MppsClient.open(peer_of(args)) as client:
        for study in studies:
            uid, sent = client.perform(study, args.station_ae or args.aet, args.status, args.pps_id)
            steps += sent
            if sent[-1].answer.ok:
                print(uid)
    return steps


def add_parsers(sub, common) -> None:
    p = sub.add_parser("mpps", help="Modality Performed Procedure Step tools")
    msub = p.add_subparsers(dest="mpps_command", required=True)
    text = "send an MPPS per study of DICOM files to any MPPS SCP (IN PROGRESS, then COMPLETED)"
    p = msub.add_parser("send", parents=[common], help=text, description=text)
    p.add_argument("paths", nargs="+", help="DICOM files or folders (searched recursively)")
    add_peer_arguments(p, what="MPPS SCP")
    p.add_argument("--status", choices=["COMPLETED", "DISCONTINUED"], default="COMPLETED",
                   help="how the step ends")
    p.add_argument("--station-ae", help="Performed Station AE Title (default: --aet)")
    p.add_argument("--pps-id", help="Performed Procedure Step ID (default: the start time, YYMMDDhhmmss)")
    p.set_defaults(func=scu_command("mpps send", cmd_mpps_send))
