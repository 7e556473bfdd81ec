"""Settings from TOML and WFM_* variables; bad values fail with source, key and reason."""

from __future__ import annotations

import pytest

from workflow.config import ConfigError, Reconcile, RemoteAE, load_settings


def write(tmp_path, text: str):
    path = tmp_path / "wfm.toml"
    path.write_text(text)
    return path


def test_defaults_run_on_sqlite_in_the_working_directory():
    s = load_settings(None, environ={})
    assert s.database_url == "sqlite:///wfm.db"
    assert (s.ae_title, s.port, s.allowed_calling_aes) == ("WFM", 11112, ())


def test_file_then_environment(tmp_path):
    path = write(tmp_path, 'ae_title = "FROMFILE"\nport = 104\nallowed_calling_aes = ["A", "B"]\n'
                           '[[remote_ae]]\nae_title = "SUB"\nhost = "127.0.0.1"\nport = 4242\n')
    s = load_settings(path, environ={"WFM_PORT": "11113", "WFM_ALLOWED_CALLING_AES": "X, Y"})
    assert s.ae_title == "FROMFILE"
    assert s.port == 11113
    assert s.allowed_calling_aes == ("X", "Y")
    assert s.remote_ae == (RemoteAE("SUB", "127.0.0.1", 4242),)


def test_config_file_from_wfm_config(tmp_path):
    path = write(tmp_path, 'max_associations = 3\n')
    assert load_settings(None, environ={"WFM_CONFIG": str(path)}).max_associations == 3


ARCHIVE = '[[remote_ae]]\nae_title = "PACS"\nhost = "127.0.0.1"\nport = 11113\n[remote_ae.reconcile]\n'


def test_archive_reconciliation_settings(tmp_path):
    path = write(tmp_path, ARCHIVE + 'method = "inventory"\nschedule = "30 2 * * *"\ndays = 7\n'
                                     'modalities = ["CT", "MR"]\nretrieve = "move"\nfeedback = "mark_unavailable"\n'
                                     'repository_query = false\n'
                                     '[[remote_ae]]\nae_title = "SUB"\nhost = "127.0.0.1"\nport = 4242\n')
    s = load_settings(path, environ={})
    assert s.remote("PACS").reconcile == Reconcile(method="inventory", schedule="30 2 * * *", days=7,
                                                   modalities=("CT", "MR"), retrieve="move",
                                                   feedback="mark_unavailable", repository_query=False)
    assert s.remote("SUB").reconcile is None  # a subscriber, not an archive we reconcile
    assert s.masked()["remote_ae"][0]["reconcile"]["modalities"] == ["CT", "MR"]


@pytest.mark.parametrize("text,expected", [
    ('port = "x"', "key 'port': cannot read 'x' as int"),
    ('ae_title = "THIS_IS_TOO_LONG_FOR_AE"', "key 'ae_title'"),
    ('colour = "blue"', "key 'colour': unknown setting"),
    ('max_instances_per_ian = 0', "key 'max_instances_per_ian': must be at least 1"),
    ('refusals_per_minute = -1', "key 'refusals_per_minute': must be 0 (every refusal told) or more"),
    ('[[remote_ae]]\nae_title = "A"\nhost = "h"', "remote_ae[0]: key 'port' is required"),
    ('[[remote_ae]]\nae_title = "A"\nhost = "h"\nport = 70000', "remote_ae[0]: key 'port'"),
    ('port = [', "not valid TOML"),
    (ARCHIVE + 'schedule = "0 25 * * *"', "remote_ae[0].reconcile: key 'schedule': '0 25 * * *' is not a valid cron"),
    (ARCHIVE + 'schedule = "daily"', "key 'schedule': 'daily' is not a valid cron expression: expected five fields"),
    (ARCHIVE + 'method = "ftp"', "remote_ae[0].reconcile: key 'method': 'ftp' is not one of auto, inventory, query"),
    (ARCHIVE + 'retrieve = "push"', "key 'retrieve': 'push' is not one of get, move"),
    (ARCHIVE + 'days = 0', "key 'days': 0 is not a positive whole number of days"),
    (ARCHIVE + 'modalities = "CT"', "key 'modalities': expected a list"),
    (ARCHIVE + 'feedback = "delete"', "key 'feedback': 'delete' is not one of report, mark_unavailable"),
    (ARCHIVE + 'scope = "all"', "remote_ae[0].reconcile: key 'scope': unknown setting"),
    (ARCHIVE + 'repository_query = "yes"', "key 'repository_query': expected true or false"),
])
def test_bad_file_names_file_key_and_reason(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_settings(path, environ={})
    assert str(path) in str(err.value) and expected in str(err.value)


def test_bad_environment_value_names_the_variable():
    with pytest.raises(ConfigError, match="environment variable WFM_MAX_ASSOCIATIONS"):
        load_settings(None, environ={"WFM_MAX_ASSOCIATIONS": "many"})


def test_missing_file():
    with pytest.raises(ConfigError, match="not found"):
        load_settings("/nonexistent/wfm.toml", environ={})


def test_password_is_masked():
    s = load_settings(None, environ={"WFM_DATABASE_URL": "postgresql+psycopg://wfm:secret@db/wfm"})
    assert s.masked()["database_url"] == "postgresql+psycopg://wfm:***@db/wfm"


def test_every_problem_is_reported_in_one_run(tmp_path):
    path = write(tmp_path, 'colour = "blue"\nport = "x"\nmax_associations = 0\ntype2_absent = "ignore"\n'
                           '[[remote_ae]]\nae_title = "A"\nhost = "h"\n'
                           '[[remote_ae]]\nae_title = "B"\nhost = "h"\nport = 104\nstatus_change = "yes"\n'
                           '[remote_ae.reconcile]\nmethod = "ftp"\ndays = 0\n')
    with pytest.raises(ConfigError) as err:
        load_settings(path, environ={"WFM_NETWORK_TIMEOUT": "soon"})
    expected = [
        f"{path}: key 'colour': unknown setting",
        f"{path}: key 'port': cannot read 'x' as int",
        "environment variable WFM_NETWORK_TIMEOUT: cannot read 'soon' as float",
        f"{path}: remote_ae[0]: key 'port' is required",
        f"{path}: remote_ae[1]: key 'status_change': expected true or false",
        f"{path}: remote_ae[1].reconcile: key 'method': 'ftp' is not one of auto, inventory, query",
        f"{path}: remote_ae[1].reconcile: key 'days': 0 is not a positive whole number of days",
        f"{path}: key 'type2_absent': 'ignore' is not one of accept, refuse",
        f"{path}: key 'max_associations': must be at least 1",
    ]
    lines = str(err.value).splitlines()
    assert len(lines) == len(expected) == len(err.value.problems)
    for line, start in zip(lines, expected):
        assert line.startswith(start), (line, start)


def test_wfm_prints_every_problem_on_its_own_line(tmp_path):
    import subprocess
    import sys

    path = write(tmp_path, 'colour = "blue"\nport = "x"\nlog_level = "LOUD"\n')
    result = subprocess.run([sys.executable, "-m", "workflow", "config", "show", "--config", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 3 and all(line.startswith(f"wfm: configuration error: {path}: key '") for line in lines)
    assert ["colour" in lines[0], "'port'" in lines[1], "log_level" in lines[2]] == [True, True, True]


def test_type2_absent_setting():
    assert load_settings(None, environ={}).type2_absent == "accept"
    assert load_settings(None, environ={"WFM_TYPE2_ABSENT": "refuse"}).type2_absent == "refuse"
    with pytest.raises(ConfigError, match="environment variable WFM_TYPE2_ABSENT: 'reject' is not one of accept, refuse"):
        load_settings(None, environ={"WFM_TYPE2_ABSENT": "reject"})
