"""Settings: one TOML file plus WFM_* environment overrides, validated into one object.

Precedence: defaults < TOML file < environment. Every top-level key has a `WFM_<KEY>` override;
lists are comma-separated. Bad values fail at start-up, every one of them named with its source,
key and reason.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterator, Mapping

AE_TITLE_RE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # AE VR: default repertoire, no backslash


class ConfigError(ValueError):
    """Configuration is wrong. `problems`: every problem found, each naming the source (file or
    environment variable), the key and the reason; the message lists them one a line."""

    def __init__(self, *problems: object) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems: tuple[object, ...] = problems


RECONCILE_METHODS = ("auto", "inventory", "query")
INVENTORY_RETRIEVE = ("get", "move")
FEEDBACK_MODES = ("report", "mark_unavailable")


@dataclass(frozen=True)
class Reconcile:
    """How an archive is reconciled (`[remote_ae.reconcile]`). Defaults: the whole archive, compared at
    instance level, the holdings method chosen from what the archive negotiates, findings only reported."""

    # inventory: Inventory Q/R (Sup 223); query: Repository Query or Study Root C-FIND (see
    # repository_query); auto: inventory when negotiated, else query.
    method: str = "auto"
    # Five-field cron expression (minute hour day month weekday), server local time; empty: no schedule.
    schedule: str = ""
    # Scope: studies of the last N days (empty: all), modalities (empty: all).
    days: int | None = None
    modalities: tuple[str, ...] = ()
    # Inventory instances fetched by C-GET, or by C-MOVE to this server's AE (its Storage SCP).
    retrieve: str = "get"
    # The Retrieve AE Title IANs name for this archive's holdings (default: its AE title).
    retrieve_ae_title: str = ""
    # Inventory path: use a COMPLETE inventory the archive already holds if taken within this many
    # hours (instances announced after it was taken are not checked); 0: always request a new one.
    inventory_max_age_hours: float = 24.0
    # Query path only: skip the IMAGE-level query of a study whose instance count agrees.
    count_shortcut: bool = False
    # Query path: list through Repository Query (paged, resumable, with Removed from Operational Use)
    # where the archive negotiates it, else Study Root C-FIND; false: always Study Root C-FIND.
    repository_query: bool = True
    # report: findings are only reported; mark_unavailable: instances missing in the archive are marked
    # UNAVAILABLE at it, so readiness is evaluated again.
    feedback: str = "report"


@dataclass(frozen=True)
class RemoteAE:
    """A peer this server opens associations to (event subscribers, archives)."""

    ae_title: str
    host: str
    port: int
    # Also told of this server's start and shutdown (UPS SCP Status Change), subscriber or not.
    status_change: bool = False
    # Reconciliation settings; None: this peer is not an archive we reconcile.
    reconcile: Reconcile | None = None
    # Associations to it use DICOM TLS, the peer verified against tls_ca_certificates.
    tls: bool = False


@dataclass(frozen=True)
class ClientAE:
    """A calling AE allowed to associate (`[[client_ae]]`), where from, with which certificate, and with
    which rights (workflow/rights.py)."""

    ae_title: str
    rights: tuple[str, ...]
    hosts: tuple[str, ...] = ()  # addresses or networks ("10.1.2.3", "10.1.0.0/16"); empty: any
    certificate_subject: str = ""  # over TLS, the client certificate's subject must be this ("CN=...,O=...")


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite:///wfm.db"
    ae_title: str = "WFM"
    host: str = "0.0.0.0"
    port: int = 11112
    # The HTTP face (UPS-RS, IAN over HTTP, the read API): its address (empty: the same as `host`) and
    # port; 0 turns HTTP off.
    http_host: str = ""
    http_port: int = 8080
    allowed_calling_aes: tuple[str, ...] = ()
    max_instances_per_ian: int = 50_000
    # IAN, MPPS and UPS N-CREATE without a Type 2 attribute: "accept" (stored as empty, logged) or
    # "refuse" (0120 naming every absent attribute in the Attribute Identifier List).
    type2_absent: str = "accept"
    max_associations: int = 20
    # Seconds a request may take before pynetdicom gives up on a silent peer.
    network_timeout: float = 60.0
    # Seconds `wfm serve` waits on SIGTERM for requests in flight before it closes associations.
    shutdown_grace: float = 30.0
    log_level: str = "INFO"
    # Readiness policies: a folder of *.toml files; empty: the default policy shipped with wfm.
    policies: str = ""
    # Readiness: seconds the worker waits after an IAN or MPPS before it evaluates the study, so a
    # burst of IANs costs one evaluation (the State Report comes that much later).
    readiness_delay: float = 0.2
    # Readiness: during a long burst of IANs for one study (never quiet for readiness_delay), the most
    # seconds its evaluation waits (a whole-study evaluation per short pause would starve the IANs);
    # never less than readiness_delay.
    readiness_max_wait: float = 2.0
    # UPS: the Worklist Label given to workitems created without one (PS3.4 CC.2.5.1.3.1).
    default_worklist_label: str = "WFM"
    # UPS: how long COMPLETED and CANCELED workitems stay retrievable (unless a deletion lock holds them).
    ups_retention_hours: float = 168.0
    # UPS event delivery: first retry delay, the cap on the delay, and how long before an event is
    # marked undeliverable (seconds).
    event_retry_initial: float = 1.0
    event_retry_max_interval: float = 60.0
    event_retry_for: float = 86400.0
    # Scheduled reconciliation: a firing missed (no process running, or all busy) still runs when
    # picked up within this many seconds of its time; later, it is skipped until the next one.
    reconcile_misfire_grace: float = 3600.0
    # A RUNNING reconciliation with no sign of life for this many seconds is ended as FAILED
    # "abandoned" (at `wfm serve` start and before each scheduled run): its process died.
    reconcile_stale_after: float = 900.0
    # DICOM TLS (PS3.15 Annex B, BCP 195): the TLS listener's port (0: none; 2762 is DICOM-TLS's
    # registered port), our certificate and key (PEM), the CA file that verifies peers, and whether a
    # client must present a certificate (only with a CA file). The HTTP face serves HTTPS on https_port.
    tls_port: int = 0
    tls_certificate: str = ""
    tls_private_key: str = ""
    tls_ca_certificates: str = ""
    tls_require_client_certificate: bool = True
    https_port: int = 0
    # Limits that keep one bad peer from hurting the others: the largest PDU we accept (announced in
    # the association), the largest data set a request may carry, associations per calling AE title and
    # per address, and the ARTIM timeout: seconds a connection may stay silent (or stall its TLS
    # handshake) before it is dropped.
    max_pdu_size: int = 16382
    max_dataset_bytes: int = 256 * 1024 * 1024
    max_associations_per_ae: int = 10
    max_associations_per_address: int = 10
    artim_timeout: float = 10.0
    # Refusals (an association or a TLS handshake refused, a request outside its rights, a token refused)
    # told one by one in the log and the audit trail, per kind and source address, in a minute; past that
    # they are counted and the count told when the minute ends (0: every one told).
    refusals_per_minute: int = 60
    # ATNA audit trail (PS3.15 A.5): the audit repository as tls://host:6514, tcp://host:port or
    # udp://host:514 (empty: no audit records); our AuditSourceID (empty: the AE title) and
    # AuditEnterpriseSiteID; the CA file that verifies a tls:// repository (empty: the system's).
    audit_repository: str = ""
    audit_source_id: str = ""
    audit_enterprise_site_id: str = ""
    audit_ca_certificates: str = ""
    remote_ae: tuple[RemoteAE, ...] = field(default_factory=tuple)
    client_ae: tuple[ClientAE, ...] = field(default_factory=tuple)
    source: str = "defaults"

    @property
    def http_address(self) -> str:
        return self.http_host or self.host

    def remote(self, ae_title: str) -> RemoteAE | None:
        return next((r for r in self.remote_ae if r.ae_title == ae_title.strip()), None)

    def masked(self) -> dict[str, Any]:
        """The effective settings as plain data, with the database password hidden."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "source":
                continue
            value = getattr(self, f.name)
            if f.name == "database_url":
                value = mask_url(value)
            elif f.name == "remote_ae":
                value = [_plain(r) for r in value]
            elif f.name == "client_ae":
                value = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(c).items()} for c in value]
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out


def _plain(remote: RemoteAE) -> dict[str, Any]:
    out = dict(vars(remote))
    if remote.reconcile is not None:
        out["reconcile"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(remote.reconcile).items()}
    else:
        del out["reconcile"]
    return out


def mask_url(url: str) -> str:
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


SCALAR_KEYS = [f.name for f in fields(Settings) if f.name not in ("remote_ae", "client_ae", "source")]


def load_settings(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from defaults, the TOML file (`path` or WFM_CONFIG) and WFM_* variables, or raise
    ConfigError with every problem found (a file with several wrong keys is fixed in one run)."""
    environ = os.environ if environ is None else environ
    path = path or environ.get("WFM_CONFIG") or None
    raw: dict[str, Any] = {}
    origin: dict[str, str] = {}
    source = "defaults"
    problems: list[str] = []
    if path:
        source = str(path)
        try:
            with open(path, "rb") as fh:
                raw = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"{path}: configuration file not found") from None
        except (IsADirectoryError, PermissionError) as exc:
            raise ConfigError(f"{path}: configuration file cannot be read: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        origin = {k: f"{path}: key '{k}'" for k in raw}
        for key in sorted(set(raw) - set(SCALAR_KEYS) - {"remote_ae", "client_ae"}):
            problems.append(f"{path}: key '{key}': unknown setting "
                            f"(known: {', '.join(SCALAR_KEYS + ['remote_ae', 'client_ae'])})")
    for key in SCALAR_KEYS:
        env_name = f"WFM_{key.upper()}"
        if env_name in environ:
            raw[key] = environ[env_name]
            origin[key] = f"environment variable {env_name}"
    values: dict[str, Any] = {"source": source}
    defaults = Settings()
    for key in SCALAR_KEYS:
        if key in raw:
            try:
                values[key] = _coerce(raw[key], type(getattr(defaults, key)))
            except (TypeError, ValueError) as exc:
                kind = type(getattr(defaults, key)).__name__
                problems.append(f"{origin[key]}: cannot read {raw[key]!r} as {kind}: {exc}")
    values["remote_ae"] = _remote_aes(raw.get("remote_ae", []), source, problems)
    values["client_ae"] = _client_aes(raw.get("client_ae", []), source, problems)
    settings = Settings(**values)
    problems += _check(settings, origin)
    if problems:
        raise ConfigError(*problems)
    return settings


def _coerce(value: Any, kind: type) -> Any:
    if kind is tuple:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            raise TypeError("expected a list")
        return tuple(str(v).strip() for v in items if str(v).strip())
    if kind is bool:
        return str(value).lower() in ("1", "true", "yes", "on")
    if kind is int and isinstance(value, float):
        raise TypeError("expected a whole number")
    return kind(value)


def _tables(entries: Any, key: str, source: str, problems: list[str]) -> Iterator[tuple[str, dict]]:
    """(where, table) for each `[[key]]` table; what is not a table goes to `problems`."""
    if not isinstance(entries, list):
        problems.append(f"{source}: key '{key}': expected [[{key}]] tables")
        return
    for i, entry in enumerate(entries):
        where = f"{source}: {key}[{i}]"
        if isinstance(entry, dict):
            yield where, entry
        else:
            problems.append(f"{where}: expected a table")


def _table_problems(where: str, entry: dict, required: tuple[str, ...]) -> list[str]:
    """The required keys missing, and a bad `ae_title`."""
    found = [f"{where}: key '{k}' is required" for k in required if k not in entry]
    title = str(entry.get("ae_title", ""))
    if "ae_title" in entry and (not AE_TITLE_RE.match(title) or not title.strip()):
        found.append(f"{where}: key 'ae_title': {title!r} is not a valid AE title (1-16 characters, no backslash)")
    return found


def _repeated_titles(key: str, titles: list[str], source: str) -> list[str]:
    return [f"{source}: {key}: AE title {t!r} appears more than once"
            for t in sorted({t for t in titles if titles.count(t) > 1})]


def _remote_aes(entries: Any, source: str, problems: list[str]) -> tuple[RemoteAE, ...]:
    """The `[[remote_ae]]` tables; each problem goes to `problems` and its entry is left out."""
    out = []
    for where, entry in _tables(entries, "remote_ae", source, problems):
        found = _table_problems(where, entry, ("ae_title", "host", "port"))
        title, port = str(entry.get("ae_title", "")), entry.get("port")
        if "port" in entry and (not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536):
            found.append(f"{where}: key 'port': {port!r} is not a TCP port")
        found += [f"{where}: key '{k}': unknown setting"
                  for k in sorted(set(entry) - {"ae_title", "host", "port", "status_change", "reconcile", "tls"})]
        for flag in ("status_change", "tls"):
            if not isinstance(entry.get(flag, False), bool):
                found.append(f"{where}: key '{flag}': expected true or false")
        reconcile = _reconcile(entry["reconcile"], f"{where}.reconcile", found) if "reconcile" in entry else None
        problems += found
        if not found:
            out.append(RemoteAE(ae_title=title, host=str(entry["host"]), port=port,
                                status_change=entry.get("status_change", False), reconcile=reconcile,
                                tls=entry.get("tls", False)))
    problems += _repeated_titles("remote_ae", [r.ae_title for r in out], source)
    return tuple(out)


def _client_aes(entries: Any, source: str, problems: list[str]) -> tuple[ClientAE, ...]:
    """The `[[client_ae]]` tables; each problem goes to `problems` and its entry is left out."""
    import ipaddress

    from workflow.rights import RightsError, parse_rights

    out = []
    for where, entry in _tables(entries, "client_ae", source, problems):
        found = _table_problems(where, entry, ("ae_title", "rights"))
        found += [f"{where}: key '{k}': unknown setting"
                  for k in sorted(set(entry) - {"ae_title", "rights", "hosts", "certificate_subject"})]
        title = str(entry.get("ae_title", ""))
        rights = entry.get("rights", [])
        if not isinstance(rights, list) or not all(isinstance(r, str) for r in rights):
            found.append(f"{where}: key 'rights': expected a list such as [\"notify\", \"query\"]")
            rights = []
        elif rights:
            try:
                parse_rights(",".join(rights))
            except RightsError as exc:
                found.append(f"{where}: key 'rights': {exc}")
        hosts = entry.get("hosts", [])
        if not isinstance(hosts, list):
            found.append(f"{where}: key 'hosts': expected a list of addresses or networks")
            hosts = []
        for host in hosts:
            try:
                ipaddress.ip_network(str(host), strict=False)
            except ValueError:
                found.append(f"{where}: key 'hosts': {host!r} is not an address or network (10.1.2.3, 10.1.0.0/16)")
        subject = entry.get("certificate_subject", "")
        if not isinstance(subject, str):
            found.append(f"{where}: key 'certificate_subject': expected text such as \"CN=ct1,O=Hospital\"")
        problems += found
        if not found:
            out.append(ClientAE(title, tuple(r.strip().lower() for r in rights), tuple(str(h) for h in hosts),
                                subject.strip()))
    problems += _repeated_titles("client_ae", [c.ae_title for c in out], source)
    return tuple(out)


def _reconcile(entry: Any, where: str, problems: list[str]) -> Reconcile | None:
    """`[remote_ae.reconcile]`; None (and `problems`) when it has any."""
    if not isinstance(entry, dict):
        problems.append(f"{where}: expected a table")
        return None
    found: list[str] = []

    def bad(key: str, reason: str) -> None:
        found.append(f"{where}: key '{key}': {reason}")

    known = {f.name: f for f in fields(Reconcile)}
    for key in sorted(set(entry) - set(known)):
        bad(key, f"unknown setting (known: {', '.join(known)})")
    for key, allowed in (("method", RECONCILE_METHODS), ("retrieve", INVENTORY_RETRIEVE), ("feedback", FEEDBACK_MODES)):
        value = entry.get(key, getattr(Reconcile, key))
        if value not in allowed:
            bad(key, f"{value!r} is not one of {', '.join(allowed)}")
    days = entry.get("days")
    if days is not None and (not isinstance(days, int) or isinstance(days, bool) or days < 1):
        bad("days", f"{days!r} is not a positive whole number of days")
    modalities = entry.get("modalities", [])
    if not isinstance(modalities, list) or not all(isinstance(m, str) and 0 < len(m) <= 16 for m in modalities):
        bad("modalities", 'expected a list of modality codes such as ["CT", "MR"]')
    schedule = entry.get("schedule", "")
    if not isinstance(schedule, str):
        bad("schedule", "expected a cron expression string")
    elif schedule.strip() and (reason := cron_problem(schedule)):
        bad("schedule", f"{schedule!r} is not a valid cron expression: {reason}")
    retrieve_ae = entry.get("retrieve_ae_title", "")
    if retrieve_ae and not AE_TITLE_RE.match(str(retrieve_ae)):
        bad("retrieve_ae_title", f"{retrieve_ae!r} is not a valid AE title")
    max_age = entry.get("inventory_max_age_hours", 24.0)
    if isinstance(max_age, bool) or not isinstance(max_age, (int, float)) or max_age < 0:
        bad("inventory_max_age_hours", f"{max_age!r} is not a number of hours (0 or more)")
    for key in ("count_shortcut", "repository_query"):
        if not isinstance(entry.get(key, False), bool):
            bad(key, "expected true or false")
    problems += found
    if found:
        return None
    return Reconcile(method=entry.get("method", Reconcile.method), schedule=schedule.strip(), days=days,
                     modalities=tuple(m.strip() for m in modalities),
                     retrieve=entry.get("retrieve", Reconcile.retrieve), retrieve_ae_title=str(retrieve_ae),
                     count_shortcut=entry.get("count_shortcut", False),
                     repository_query=entry.get("repository_query", True), inventory_max_age_hours=float(max_age),
                     feedback=entry.get("feedback", Reconcile.feedback))


def cron_problem(expression: str) -> str | None:
    """Why a five-field cron expression is not valid, or None (APScheduler's own parser decides)."""
    if len(expression.split()) != 5:
        return "expected five fields: minute hour day month weekday"
    try:
        from apscheduler.triggers.cron import CronTrigger
        CronTrigger.from_crontab(expression)
    except ValueError as exc:
        return str(exc)
    return None


def _check(s: Settings, origin: Mapping[str, str]) -> list[str]:
    """Every value out of its range, naming where it came from."""
    problems: list[str] = []

    def fail(key: str, reason: str) -> None:
        problems.append(f"{origin.get(key, f'default {key}')}: {reason}")

    if not AE_TITLE_RE.match(s.ae_title) or not s.ae_title.strip():
        fail("ae_title", f"{s.ae_title!r} is not a valid AE title (1-16 characters, no backslash)")
    for title in s.allowed_calling_aes:
        if not AE_TITLE_RE.match(title):
            fail("allowed_calling_aes", f"{title!r} is not a valid AE title")
    if not 0 <= s.port < 65536:
        fail("port", f"{s.port} is not a TCP port")
    if s.audit_repository and not re.match(r"^(tls|tcp|udp)://[^:/\s]+:\d{1,5}$", s.audit_repository):
        fail("audit_repository", f"{s.audit_repository!r} is not tls://host:port, tcp://host:port or udp://host:port")
    if s.audit_ca_certificates and not Path(s.audit_ca_certificates).is_file():
        fail("audit_ca_certificates", f"{s.audit_ca_certificates}: no such file")
    for key in ("tls_port", "https_port"):
        if not 0 <= getattr(s, key) < 65536:
            fail(key, f"{getattr(s, key)} is not a TCP port (0: none)")
    if s.tls_port or s.https_port:
        for key in ("tls_certificate", "tls_private_key"):
            if not getattr(s, key):
                fail(key, "required when tls_port or https_port is set (a PEM file)")
    for key in ("tls_certificate", "tls_private_key", "tls_ca_certificates"):
        if getattr(s, key) and not Path(getattr(s, key)).is_file():
            fail(key, f"{getattr(s, key)}: no such file")
    if any(r.tls for r in s.remote_ae) and not s.tls_ca_certificates:
        fail("tls_ca_certificates", "required when a [[remote_ae]] says tls = true (it verifies the peer)")
    if s.max_pdu_size and not 4096 <= s.max_pdu_size <= 2 ** 24:
        fail("max_pdu_size", "must be 0 (no limit) or between 4096 and 16777216 bytes")
    for key in ("max_dataset_bytes", "max_associations_per_ae", "max_associations_per_address"):
        if getattr(s, key) < 1:
            fail(key, "must be at least 1")
    if s.refusals_per_minute < 0:
        fail("refusals_per_minute", "must be 0 (every refusal told) or more")
    if not 0 < s.artim_timeout <= 120:
        fail("artim_timeout", "must be between 0 and 120 seconds")
    if not 0 <= s.http_port < 65536:
        fail("http_port", f"{s.http_port} is not a TCP port (0 turns HTTP off)")
    if s.max_instances_per_ian < 1:
        fail("max_instances_per_ian", "must be at least 1")
    if s.type2_absent not in ("accept", "refuse"):
        fail("type2_absent", f"{s.type2_absent!r} is not one of accept, refuse")
    if s.max_associations < 1:
        fail("max_associations", "must be at least 1")
    if s.network_timeout <= 0:
        fail("network_timeout", "must be positive")
    if s.shutdown_grace < 0:
        fail("shutdown_grace", "must not be negative")
    if not 0 <= s.readiness_delay <= 60:
        fail("readiness_delay", "must be between 0 and 60 seconds")
    if not 0 < s.readiness_max_wait <= 600:
        fail("readiness_max_wait", "must be between 0 and 600 seconds")
    if not 0 < len(s.default_worklist_label) <= 64:
        fail("default_worklist_label", "must be 1-64 characters")
    if s.ups_retention_hours < 0:
        fail("ups_retention_hours", "must not be negative")
    if not 0 < s.event_retry_initial <= s.event_retry_max_interval:
        fail("event_retry_initial", "must be positive and at most event_retry_max_interval")
    if s.event_retry_for < s.event_retry_max_interval:
        fail("event_retry_for", "must be at least event_retry_max_interval")
    if s.reconcile_misfire_grace <= 0:
        fail("reconcile_misfire_grace", "must be positive (seconds a late scheduled reconciliation may still start)")
    if s.reconcile_stale_after < 60:
        fail("reconcile_stale_after", "must be at least 60 seconds: a live run shows progress only every 100 "
                                      "studies, and a shorter limit would end it as abandoned")
    if s.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        fail("log_level", "must be DEBUG, INFO, WARNING or ERROR")
    if "://" not in s.database_url:
        fail("database_url", "expected a URL such as sqlite:///wfm.db or postgresql+psycopg://user@host/db")
    return problems
