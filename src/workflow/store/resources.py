"""Files that ship with wfm: inside the package when installed from a wheel, at the top of the
source tree in a checkout or editable install."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def shipped(packaged_name: str, source_name: str) -> Path:
    packaged = resources.files("workflow") / packaged_name
    if packaged.is_dir():
        return Path(str(packaged))
    source_tree = Path(__file__).resolve().parents[3] / source_name
    if source_tree.is_dir():
        return source_tree
    raise RuntimeError(f"{source_name}/ is missing from this installation")


def policies_location(configured: str) -> Path:
    """The configured policy folder or file, or the policies shipped with wfm."""
    return Path(configured) if configured else shipped("_policies", "policies")
