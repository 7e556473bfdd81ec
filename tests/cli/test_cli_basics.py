"""What a newcomer meets first on the command line: --config before or after the subcommand, a
one-line message instead of a traceback for each mistake they can make, and help texts that say the
defaults. Each command runs as a subprocess, as a user runs it."""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from workflow.cli import _subparsers, build_parser

pytestmark = pytest.mark.slow  # runs `wfm` as a subprocess


def wfm(*args: str, cwd: Path, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("WFM_")}
    environ.update(env or {})
    return subprocess.run([sys.executable, "-m", "workflow", *args], cwd=cwd, env=environ, capture_output=True,
                          text=True, timeout=timeout)


def no_traceback(result: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in result.stderr, result.stderr


@pytest.mark.parametrize("where", ["before", "after"])
def test_config_option_works_before_or_after_the_subcommand(tmp_path, where):
    config = tmp_path / "site.toml"
    config.write_text("port = 11999\nae_title = \"SITEWFM\"\n")
    args = ["--config", str(config), "config", "show", "--json"] if where == "before" else \
        ["config", "show", "--json", "--config", str(config)]
    result = wfm(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert '"port": 11999' in result.stdout and '"ae_title": "SITEWFM"' in result.stdout


@pytest.mark.parametrize("args", [["--config", "{missing}", "config", "show"],
                                  ["config", "show", "--config", "{missing}"],
                                  ["--config", "{folder}", "study", "1.2.3"]])
def test_a_config_file_that_cannot_be_read_is_named(tmp_path, args):
    args = [a.format(missing=tmp_path / "missing.toml", folder=tmp_path) for a in args]
    result = wfm(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert str(args[args.index("--config") + 1]) in result.stderr
    no_traceback(result)


@pytest.mark.parametrize("command", [["study", "1.2.3"], ["ups", "list"], ["ups", "show", "1.2.3"], ["events"],
                                     ["report", "list"], ["explain", "1.2.3"], ["db", "current"],
                                     ["reconcile", "schedule"]])
def test_a_read_only_command_never_creates_a_database(tmp_path, command):
    result = wfm(*command, cwd=tmp_path)
    assert result.returncode == 2
    assert "no database at" in result.stderr and "wfm serve" in result.stderr
    assert not (tmp_path / "wfm.db").exists()
    no_traceback(result)


def test_a_database_without_schema_says_run_db_upgrade(tmp_path):
    (tmp_path / "wfm.db").write_bytes(b"")  # an empty SQLite file: no tables
    result = wfm("ups", "list", cwd=tmp_path)
    assert result.returncode == 2 and "has no schema" in result.stderr and "wfm db upgrade" in result.stderr
    no_traceback(result)


def test_report_list_says_when_there_are_no_runs(tmp_path):
    assert wfm("db", "upgrade", cwd=tmp_path).returncode == 0
    result = wfm("report", "list", cwd=tmp_path)
    assert result.returncode == 0 and "no reconciliation runs yet" in result.stderr


def test_serve_on_a_port_in_use_says_which_setting_changes_it(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = wfm("serve", cwd=tmp_path, env={"WFM_PORT": str(port), "WFM_HOST": "127.0.0.1"})
    assert result.returncode == 2
    line = result.stderr.strip().splitlines()[-1]
    assert f"127.0.0.1:{port}" in line and "already in use" in line and "WFM_PORT" in line
    no_traceback(result)


def test_output_piped_into_head_ends_quietly(tmp_path):
    """`wfm conformance | head -1`: the reader closes the pipe early; no BrokenPipeError."""
    result = subprocess.run(f"{sys.executable} -m workflow conformance | head -1", shell=True, cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.stdout.startswith("# DICOM Conformance Statement")
    assert "BrokenPipe" not in result.stderr and "Traceback" not in result.stderr, result.stderr


@pytest.mark.parametrize("flags, says", [
    (["--retrieve-ae", "A" * 17], "--retrieve-ae 'AAAAAAAAAAAAAAAAA' is not a valid AE title"),
    (["--retrieve-ae", "PACS", "--retrieve-url", "http://pacs/{studyuid}"], "unknown placeholder {studyuid}"),
    (["--retrieve-ae", "PACS", "--aec", "BAD\\AE"], "--aec 'BAD\\\\AE' is not a valid AE title"),
])
def test_ian_send_checks_its_arguments_before_sending(tmp_path, flags, says):
    result = wfm("ian", "send", str(tmp_path), "--port", "1", *flags, cwd=tmp_path)
    assert result.returncode == 2 and says in result.stderr, result.stderr
    no_traceback(result)


def test_ian_send_to_a_port_where_nothing_listens_says_connection_refused(tmp_path):
    from testkit.ian import make_ian  # noqa: F401  (pydicom data for a file)
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.save_as(tmp_path / "one.dcm", enforce_file_format=True)
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    result = wfm("ian", "send", str(tmp_path), "--retrieve-ae", "PACS", "--port", str(port), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"wfm ian send: connection refused: nothing accepts connections at 127.0.0.1:{port} "
        "(is the server running, and is that its port?)"]


def test_every_option_has_help_and_says_its_default():
    parser = build_parser()
    for command in (parser, *_subparsers(parser)):
        for action in command._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction, argparse._VersionAction)):
                continue
            assert action.help, f"{command.prog}: {action.option_strings or action.dest} has no help text"
            if action.option_strings and action.default not in (None, False, argparse.SUPPRESS, []):
                assert "(default: " in command.formatter_class(command.prog)._get_help_string(action) % {
                    "default": action.default}
