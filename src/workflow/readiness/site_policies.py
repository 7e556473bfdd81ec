"""The site's policy files: the folder the `policies` setting names, or the copy shipped with wfm when
it names none. Every load says which folder and files are in force, so an operator never edits a copy
the server does not read."""

from __future__ import annotations

import logging
from pathlib import Path

from workflow.readiness.rules.policy import PolicySet, load_policies
from workflow.store.resources import policies_location

log = logging.getLogger("workflow.readiness")


def load_site_policies(configured: str, what: str = "policies loaded") -> PolicySet:
    """Load the site's policies (PolicyError when any file is wrong) and log where they came from."""
    location = policies_location(configured)
    policies = load_policies(location)
    shipped = ("" if configured else
               " (the copy shipped with wfm: `wfm policies init DIR` and `policies = DIR` make a site's own)")
    log.info(f"{what} from {location}{shipped}: {', '.join(Path(f).name for f in policies.sources)}; "
             f"{len(policies.policies)} policies, {len(policies.templates)} templates")
    return policies
