"""The README's settings examples are settings the server accepts: a newcomer copies them."""

from __future__ import annotations

import re
from pathlib import Path

from workflow.config import load_settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_settings_examples_load(tmp_path):
    blocks = [b for b in re.findall(r"```toml\n(.*?)```", README.read_text(), re.S) if "tls_certificate =" not in b
              or "tls_port = 0" in b]  # the TLS example names certificate files a reader makes first
    assert len(blocks) >= 2
    for i, block in enumerate(blocks):
        path = tmp_path / f"example{i}.toml"
        path.write_text(block)
        load_settings(path, {})  # raises ConfigError naming the key
    rights = load_settings(tmp_path / f"example{len(blocks) - 1}.toml", {}).client_ae
    assert [c.ae_title for c in rights] == ["CT1", "AI_ORCH"]
