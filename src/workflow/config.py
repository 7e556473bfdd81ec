"""Settings: one TOML file plus WFM_* environment overrides, validated into one object.

Precedence: defaults < TOML file < environment. Every top-level key has a `WFM_<KEY>` override;
lists are comma-separated. A bad value fails at start-up naming the source, the key and the reason.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

AE_TITLE_RE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # AE VR: default repertoire, no backslash


class ConfigError(ValueError):
    """A configuration value is wrong. The message names the source (file or env var), key and reason."""


@dataclass(frozen=True)
class RemoteAE:
    """A peer this server opens associations to (event subscribers, archives)."""

    ae_title: str
    host: str
    port: int
    # Also told of this server's start and shutdown (UPS SCP Status Change), subscriber or not.
    status_change: bool = False


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite:///wfm.db"
    ae_title: str = "WFM"
    host: str = "0.0.0.0"
    port: int = 11112
    allowed_calling_aes: tuple[str, ...] = ()
    max_instances_per_ian: int = 50_000
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
    # UPS: the Worklist Label given to workitems created without one (PS3.4 CC.2.5.1.3.1).
    default_worklist_label: str = "WFM"
    # UPS: how long COMPLETED and CANCELED workitems stay retrievable (unless a deletion lock holds them).
    ups_retention_hours: float = 168.0
    # UPS event delivery: first retry delay, the cap on the delay, and how long before an event is
    # marked undeliverable (seconds).
    event_retry_initial: float = 1.0
    event_retry_max_interval: float = 60.0
    event_retry_for: float = 86400.0
    remote_ae: tuple[RemoteAE, ...] = field(default_factory=tuple)
    source: str = "defaults"

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
                value = [vars(r) for r in value]
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out


def mask_url(url: str) -> str:
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


SCALAR_KEYS = [f.name for f in fields(Settings) if f.name not in ("remote_ae", "source")]


def load_settings(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from defaults, the TOML file (`path` or WFM_CONFIG) and WFM_* variables."""
    environ = os.environ if environ is None else environ
    path = path or environ.get("WFM_CONFIG") or None
    raw: dict[str, Any] = {}
    origin: dict[str, str] = {}
    source = "defaults"
    if path:
        source = str(path)
        try:
            with open(path, "rb") as fh:
                raw = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"{path}: configuration file not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        origin = {k: f"{path}: key '{k}'" for k in raw}
        unknown = sorted(set(raw) - set(SCALAR_KEYS) - {"remote_ae"})
        if unknown:
            raise ConfigError(f"{path}: key '{unknown[0]}': unknown setting (known: {', '.join(SCALAR_KEYS + ['remote_ae'])})")
    for key in SCALAR_KEYS:
        env_name = f"WFM_{key.upper()}"
        if env_name in environ:
            raw[key] = environ[env_name]
            origin[key] = f"environment variable {env_name}"
    values: dict[str, Any] = {"source": source}
    defaults = Settings()
    for key in SCALAR_KEYS:
        if key in raw:
            values[key] = _coerce(key, raw[key], type(getattr(defaults, key)), origin[key])
    values["remote_ae"] = _remote_aes(raw.get("remote_ae", []), source)
    settings = Settings(**values)
    _check(settings, origin)
    return settings


def _coerce(key: str, value: Any, kind: type, where: str) -> Any:
    try:
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
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: cannot read {value!r} as {kind.__name__}: {exc}") from None


def _remote_aes(entries: Any, source: str) -> tuple[RemoteAE, ...]:
    if not isinstance(entries, list):
        raise ConfigError(f"{source}: key 'remote_ae': expected [[remote_ae]] tables")
    out = []
    for i, entry in enumerate(entries):
        where = f"{source}: remote_ae[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a table")
        missing = [k for k in ("ae_title", "host", "port") if k not in entry]
        if missing:
            raise ConfigError(f"{where}: key '{missing[0]}' is required")
        title = str(entry["ae_title"])
        if not AE_TITLE_RE.match(title) or not title.strip():
            raise ConfigError(f"{where}: key 'ae_title': {title!r} is not a valid AE title (1-16 characters, no backslash)")
        port = entry["port"]
        if not isinstance(port, int) or not 0 < port < 65536:
            raise ConfigError(f"{where}: key 'port': {port!r} is not a TCP port")
        unknown = sorted(set(entry) - {"ae_title", "host", "port", "status_change"})
        if unknown:
            raise ConfigError(f"{where}: key '{unknown[0]}': unknown setting")
        status_change = entry.get("status_change", False)
        if not isinstance(status_change, bool):
            raise ConfigError(f"{where}: key 'status_change': expected true or false")
        out.append(RemoteAE(ae_title=title, host=str(entry["host"]), port=port, status_change=status_change))
    titles = [r.ae_title for r in out]
    dupes = sorted({t for t in titles if titles.count(t) > 1})
    if dupes:
        raise ConfigError(f"{source}: remote_ae: AE title {dupes[0]!r} appears more than once")
    return tuple(out)


def _check(s: Settings, origin: Mapping[str, str]) -> None:
    def fail(key: str, reason: str) -> None:
        raise ConfigError(f"{origin.get(key, f'default {key}')}: {reason}")

    if not AE_TITLE_RE.match(s.ae_title) or not s.ae_title.strip():
        fail("ae_title", f"{s.ae_title!r} is not a valid AE title (1-16 characters, no backslash)")
    for title in s.allowed_calling_aes:
        if not AE_TITLE_RE.match(title):
            fail("allowed_calling_aes", f"{title!r} is not a valid AE title")
    if not 0 <= s.port < 65536:
        fail("port", f"{s.port} is not a TCP port")
    if s.max_instances_per_ian < 1:
        fail("max_instances_per_ian", "must be at least 1")
    if s.max_associations < 1:
        fail("max_associations", "must be at least 1")
    if s.network_timeout <= 0:
        fail("network_timeout", "must be positive")
    if s.shutdown_grace < 0:
        fail("shutdown_grace", "must not be negative")
    if not 0 <= s.readiness_delay <= 60:
        fail("readiness_delay", "must be between 0 and 60 seconds")
    if not 0 < len(s.default_worklist_label) <= 64:
        fail("default_worklist_label", "must be 1-64 characters")
    if s.ups_retention_hours < 0:
        fail("ups_retention_hours", "must not be negative")
    if not 0 < s.event_retry_initial <= s.event_retry_max_interval:
        fail("event_retry_initial", "must be positive and at most event_retry_max_interval")
    if s.event_retry_for < s.event_retry_max_interval:
        fail("event_retry_for", "must be at least event_retry_max_interval")
    if s.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        fail("log_level", "must be DEBUG, INFO, WARNING or ERROR")
    if "://" not in s.database_url:
        fail("database_url", "expected a URL such as sqlite:///wfm.db or postgresql+psycopg://user@host/db")
