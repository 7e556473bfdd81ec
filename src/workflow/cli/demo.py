"""`wfm demo`: the whole workflow on 127.0.0.1 in a temporary folder, narrated one line per step
(see workflow/demo/story.py). Every process it starts is stopped by its PID at the end, on an error
and on Ctrl-C or SIGTERM, unless `--keep` leaves the servers running for exploring."""

from __future__ import annotations

import signal
import sys
import tempfile
import threading
from pathlib import Path



def cmd_demo(args) -> int:
    from workflow.demo.processes import StartFailed
    from workflow.demo.story import StepFailed, Story
    from workflow.dimse.client import AssociationFailed, end_stray_dul_threads

    folder = Path(args.folder) if args.folder else Path(tempfile.mkdtemp(prefix="wfm-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    if any(folder.iterdir()):
        print(f"wfm demo: {folder} is not empty; name an empty or new folder", file=sys.stderr)
        return 1

    # Ctrl-C and SIGTERM stop the demo. The flag backs up the KeyboardInterrupt: Python drops an
    # exception raised while a finalizer (__del__, a weakref callback) runs, and the story would go on;
    # it is checked at every step and at the end. Our own SIGINT handler also overrides an ignored
    # SIGINT inherited from the parent.
    interrupted = threading.Event()

    def on_signal(signum, frame):
        interrupted.set()
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    story = Story(folder, sys.stdout, keep=args.keep, interrupted=interrupted)
    try:
        uids = story.run()
        if interrupted.is_set():
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        story.keep = False
        print("\nwfm demo: interrupted; stopping what it started", file=sys.stderr)
        return 130
    except (StartFailed, StepFailed, AssociationFailed, TimeoutError, OSError) as exc:
        story.keep = False
        print(f"wfm demo: failed: {exc}\n(logs in {folder})", file=sys.stderr)
        return 1
    finally:
        story.stop()
        if interrupted.is_set():
            end_stray_dul_threads()
    story.epilogue(*uids)
    return 0


def add_parsers(sub, common) -> None:
    text = "run the whole workflow on 127.0.0.1 (archive, wfm server, modality, scheduler, subscriber, " \
           "performer, reconciliation), narrated; under a minute"
    p = sub.add_parser("demo", parents=[common], help=text, description=text)
    p.add_argument("--keep", action="store_true", help="leave the archive and the server running for exploring "
                                                        "(their PIDs are printed)")
    p.add_argument("--folder", help="an empty folder for the databases, logs and report (default: a new "
                                    "temporary one)")
    p.set_defaults(func=cmd_demo)
