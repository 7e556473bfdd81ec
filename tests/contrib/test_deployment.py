"""Deployment pieces as admins use them: systemd accepts the unit (and it says what the issue asks: its
own user, reload on SIGHUP, restart on failure), the wheel the Containerfile installs carries what an
installed `wfm` needs (migrations, shipped policies) and serves from it, and the production page names
only commands and settings that exist."""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "contrib" / "systemd" / "wfm.service"


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(UNIT)
    return parser


def test_the_unit_runs_wfm_serve_as_its_own_user_reloads_on_sighup_and_restarts_on_failure():
    service = unit()["Service"]
    assert service["User"] == service["Group"] == "wfm"
    assert service["ExecStart"].split()[-1] == "serve"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["Restart"] == "on-failure"
    assert service["RestartPreventExitStatus"] == "2"  # wfm's exit status for a configuration error


def test_systemd_analyze_verify_accepts_the_unit(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed (Debian package systemd)")
    # verify checks that ExecStart exists: point it at the wfm of this environment.
    wfm = Path(sys.executable).with_name("wfm")
    assert wfm.exists(), f"{wfm}: the test environment's wfm script"
    text = UNIT.read_text().replace("/opt/wfm/bin/wfm", str(wfm))
    (tmp_path / "wfm.service").write_text(text)
    result = subprocess.run([analyze, "verify", str(tmp_path / "wfm.service")], capture_output=True, text=True,
                            timeout=60, env={**os.environ, "SYSTEMD_LOG_LEVEL": "notice"})
    # verify exits 0 even for unknown keys and bad values; it only warns: any word from it is a finding.
    assert result.returncode == 0 and (result.stdout + result.stderr).strip() == "", result.stdout + result.stderr


def test_systemd_analyze_verify_would_catch_a_mistake(tmp_path):
    """The check above can fail: a misspelt key is reported."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed (Debian package systemd)")
    text = UNIT.read_text().replace("/opt/wfm/bin/wfm", str(Path(sys.executable).with_name("wfm")))
    (tmp_path / "wfm.service").write_text(text.replace("Restart=on-failure", "Restartt=on-failure"))
    result = subprocess.run([analyze, "verify", str(tmp_path / "wfm.service")], capture_output=True, text=True,
                            timeout=60)
    assert "Restartt" in result.stdout + result.stderr


@pytest.mark.slow
def test_the_wheel_the_containerfile_installs_is_self_sufficient(tmp_path):
    containerfile = (ROOT / "Containerfile").read_text()
    assert "pip wheel --no-cache-dir --no-deps --wheel-dir /dist ." in containerfile
    assert re.search(r"pip install --no-cache-dir /tmp/\*\.whl", containerfile)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--wheel-dir", str(tmp_path / "dist"),
                            str(ROOT)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    [wheel] = (tmp_path / "dist").glob("*.whl")
    site = tmp_path / "site"
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site),
                                str(wheel)], capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr
    # The dependencies from this environment, workflow itself only from the wheel, run outside the checkout.
    env = {**os.environ, "PYTHONPATH": str(site), "WFM_DATABASE_URL": f"sqlite:///{tmp_path / 'wfm.db'}"}
    env.pop("WFM_CONFIG", None)

    def wfm(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "workflow", *args], capture_output=True, text=True,
                              timeout=120, env=env, cwd=tmp_path)

    where = subprocess.run([sys.executable, "-c", "import workflow; print(workflow.__file__)"], capture_output=True,
                           text=True, env=env, cwd=tmp_path)
    assert where.stdout.strip().startswith(str(site))
    upgraded = wfm("db", "upgrade")
    assert upgraded.returncode == 0 and "(up to date)" in upgraded.stdout, upgraded.stderr
    checked = wfm("policies", "check")
    assert checked.returncode == 0, checked.stderr
    assert "_policies" in checked.stdout + checked.stderr


def test_the_production_page_names_commands_that_exist():
    page = (ROOT / "docs" / "production.md").read_text()
    for needed in ("PostgreSQL", "Backups", "Upgrading", "Several servers", "Log shipping", "Metrics"):
        assert needed in page
    from workflow.cli import build_parser
    parser = build_parser()
    for command in sorted(set(re.findall(r"`wfm ([a-z]+(?: [a-z]+)?)", page))):
        words = command.split()
        try:
            parser.parse_args([*words, "--help"])
        except SystemExit as exc:
            assert exc.code == 0, f"`wfm {command}` in docs/production.md is not a command"
