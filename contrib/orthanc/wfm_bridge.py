"""Orthanc -> workflow manager bridge (Orthanc's Python plugin, `orthanc-python`).

When Orthanc declares a study stable (no new instance for `StableAge` seconds), this plugin builds an
Instance Availability Notification (PS3.4 Annex R) naming every instance of the study as ONLINE at
Orthanc's AE title (and at its DICOMweb URL when the DICOMweb plugin is loaded), writes it to a queue
folder, and a sender thread POSTs it as DICOM JSON to the workflow manager's `POST /api/ian`.

Nothing is lost when the workflow manager is down or restarting: an IAN leaves the queue only once
the workflow manager answered 200 (it has committed it). Until then the sender retries, oldest first,
waiting 1 s, 2 s, 4 s ... up to `RetryMaxInterval`. A resend after a lost answer is harmless: the IAN
keeps its SOP Instance UID, and the workflow manager takes an identical IAN again as a no-op success.
An IAN the workflow manager refuses for its content (HTTP 400, 409, 413) is moved to `failed/` in the
queue folder and logged: retrying could not change the answer. 401/403 (token) and 5xx are retried,
so fixing the token on either side delivers what waited.

Configuration (Orthanc's configuration file):

    "Plugins": ["/usr/share/orthanc/plugins/libOrthancPython.so"],
    "PythonScript": "/etc/orthanc/wfm_bridge.py",
    "WorkflowManager": {
      "Url": "http://wfm.example.org:8080",   // base URL of wfm's HTTP face, no path (required)
      "Token": "...",                         // a wfm token with the `notify` right
      "RetrieveAETitle": "ORTHANC",           // default: Orthanc's DicomAet
      "RetrieveUrl": "https://pacs.example.org/dicom-web",  // default: from the DICOMweb plugin's settings
      "QueueDirectory": "/var/lib/orthanc/wfm-bridge",      // default: <StorageDirectory>/wfm-bridge
      "MaxInstancesPerIan": 5000,             // a larger study is announced in several IANs
      "RetryMaxInterval": 60,                 // seconds
      "Timeout": 30                           // seconds per HTTP request
    }

Only the standard library is used. The pure parts (settings, IAN building, answer classification)
work without Orthanc, so they are tested outside it too.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid

try:  # inside Orthanc; absent when the pure parts are imported by tests
    import orthanc
except ImportError:  # pragma: no cover - exercised only outside Orthanc
    orthanc = None

SECTION = "WorkflowManager"
IAN_SOP_CLASS = "1.2.840.10008.5.1.4.33"
RETRY_FIRST = 1.0

# wfm's answers (contrib/orthanc/README.md): 200 taken; these refuse the content, so never retry them.
PERMANENT = {400, 404, 405, 409, 413, 415, 422}


class BridgeConfigError(ValueError):
    """The WorkflowManager section is unusable; the message names the key."""


class Settings:
    def __init__(self, config: dict) -> None:
        section = config.get(SECTION)
        if not isinstance(section, dict):
            raise BridgeConfigError(f'no "{SECTION}" section in Orthanc\'s configuration')
        url = section.get("Url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise BridgeConfigError(f'{SECTION}.Url must be the http(s):// base URL of wfm\'s HTTP face, got {url!r}')
        self.url = url.rstrip("/")
        self.token = section.get("Token") or None
        self.retrieve_ae = str(section.get("RetrieveAETitle") or config.get("DicomAet") or "ORTHANC")
        if not 0 < len(self.retrieve_ae) <= 16:
            raise BridgeConfigError(f"{SECTION}.RetrieveAETitle must be 1 to 16 characters")
        self.retrieve_url = section.get("RetrieveUrl") or None  # completed from DICOMweb at start-up
        storage = config.get("StorageDirectory") or "OrthancStorage"
        self.queue = section.get("QueueDirectory") or os.path.join(storage, "wfm-bridge")
        self.max_instances = _positive(section, "MaxInstancesPerIan", 5000)
        self.retry_max = float(_positive(section, "RetryMaxInterval", 60))
        self.timeout = float(_positive(section, "Timeout", 30))


def _positive(section: dict, key: str, default: int) -> int:
    value = section.get(key, default)
    if not isinstance(value, (int, float)) or value <= 0:
        raise BridgeConfigError(f"{SECTION}.{key} must be a positive number, got {value!r}")
    return int(value)


def dicomweb_root(config: dict, plugins: list[str]) -> str | None:
    """Orthanc's DICOMweb base URL as others reach it, when the DICOMweb plugin is loaded: its `Host`
    (default: this machine's name and Orthanc's HTTP port), `Ssl` and `Root` settings."""
    if "dicom-web" not in plugins:
        return None
    web = config.get("DicomWeb") or {}
    if web.get("Enable") is False:
        return None
    host = web.get("Host") or f"{socket.getfqdn()}:{config.get('HttpPort', 8042)}"
    root = "/" + str(web.get("Root", "/dicom-web/")).strip("/")
    return f"{'https' if web.get('Ssl') else 'http'}://{host}{root}"


def new_uid() -> str:
    return f"2.25.{uuid.uuid4().int}"


def _element(vr: str, *values) -> dict:
    return {"vr": vr, "Value": list(values)} if values else {"vr": vr}


def build_ians(study_uid: str, instances: list[tuple[str, str, str]], retrieve_ae: str,
               retrieve_url: str | None, max_instances: int) -> list[dict]:
    """IANs (DICOM JSON, SOP Instance UID in 00080018) for `instances` = (series UID, SOP class, SOP
    instance), at most `max_instances` instances each, every one ONLINE at `retrieve_ae`."""
    ordered = sorted(instances)
    ians = []
    for start in range(0, len(ordered), max_instances):
        series: dict[str, list[dict]] = {}
        for series_uid, sop_class, sop_uid in ordered[start:start + max_instances]:
            item = {"00081150": _element("UI", sop_class), "00081155": _element("UI", sop_uid),
                    "00080056": _element("CS", "ONLINE"), "00080054": _element("AE", retrieve_ae)}
            if retrieve_url:
                item["00081190"] = _element(
                    "UR", f"{retrieve_url}/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}")
            series.setdefault(series_uid, []).append(item)
        ians.append({
            "00080016": _element("UI", IAN_SOP_CLASS),
            "00080018": _element("UI", new_uid()),
            "00081111": _element("SQ"),  # Referenced Performed Procedure Step Sequence: Type 2, none known
            "0020000D": _element("UI", study_uid),
            "00081115": _element("SQ", *({"0020000E": _element("UI", uid), "00081199": _element("SQ", *items)}
                                         for uid, items in series.items())),
        })
    return ians


def classify(code: int | None) -> str:
    """'done' (wfm committed it), 'failed' (wfm refuses the content: keep it aside), or 'retry'
    (wfm unreachable, restarting, or refusing the token: try again later)."""
    if code is not None and 200 <= code < 300:
        return "done"
    if code in PERMANENT:
        return "failed"
    return "retry"


class Queue:
    """IANs waiting for wfm: one JSON file each, written atomically, named so that sorting the names
    gives the order they were queued in."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.failed = os.path.join(folder, "failed")
        os.makedirs(self.failed, exist_ok=True)
        self._seq = 0
        self._lock = threading.Lock()

    def put(self, ian: dict) -> str:
        with self._lock:
            self._seq += 1
            name = f"{time.time_ns():020d}-{self._seq:06d}-{ian['00080018']['Value'][0]}.json"
        tmp = os.path.join(self.folder, f".{name}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(ian, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, os.path.join(self.folder, name))
        return name

    def pending(self) -> list[str]:
        return sorted(n for n in os.listdir(self.folder) if n.endswith(".json") and not n.startswith("."))

    def read(self, name: str) -> bytes:
        with open(os.path.join(self.folder, name), "rb") as f:
            return f.read()

    def done(self, name: str) -> None:
        os.remove(os.path.join(self.folder, name))

    def set_aside(self, name: str) -> None:
        os.replace(os.path.join(self.folder, name), os.path.join(self.failed, name))


class Sender(threading.Thread):
    """Delivers the queue in order; sleeps while it is empty, backs off while wfm does not take it."""

    def __init__(self, settings: Settings, queue: Queue, log) -> None:
        super().__init__(name="wfm-bridge-sender", daemon=True)
        self.settings, self.queue, self.log = settings, queue, log
        self.wake = threading.Event()
        self.stopping = threading.Event()

    def run(self) -> None:
        delay = RETRY_FIRST
        while not self.stopping.is_set():
            names = self.queue.pending()
            if not names:
                self.wake.wait(60)
                self.wake.clear()
                continue
            outcome = self.deliver(names[0])
            if outcome == "retry":
                self.stopping.wait(delay)
                delay = min(delay * 2, self.settings.retry_max)
            else:
                delay = RETRY_FIRST

    def deliver(self, name: str) -> str:
        body = self.queue.read(name)
        code, detail = self.post(body)
        outcome = classify(code)
        if outcome == "done":
            self.queue.done(name)
            self.log("info", f"wfm took IAN {name}")
        elif outcome == "failed":
            self.queue.set_aside(name)
            self.log("error", f"wfm refused IAN {name} (HTTP {code}: {detail}); kept in {self.queue.failed}, "
                              f"move it back to {self.queue.folder} to send it again")
        else:
            self.log("warning", f"wfm did not take IAN {name} ({detail}); retrying")
        return outcome

    def post(self, body: bytes) -> tuple[int | None, str]:
        headers = {"Content-Type": "application/dicom+json"}
        if self.settings.token:
            headers["Authorization"] = f"Bearer {self.settings.token}"
        request = urllib.request.Request(f"{self.settings.url}/api/ian", data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.settings.timeout) as answer:
                return answer.status, answer.read(300).decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(300).decode("utf-8", "replace")
        except (OSError, ValueError) as exc:  # refused, reset, timed out, name not resolved
            return None, f"{exc.__class__.__name__}: {exc}"

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()


# -- inside Orthanc ------------------------------------------------------------------------------------

def _log(level: str, message: str) -> None:
    {"info": orthanc.LogInfo, "warning": orthanc.LogWarning, "error": orthanc.LogError}[level](
        f"wfm-bridge: {message}")


def _get(uri: str):
    return json.loads(orthanc.RestApiGet(uri))


def study_instances(study_id: str) -> tuple[str, list[tuple[str, str, str]]]:
    """The study's UID and its instances as (series UID, SOP class, SOP instance), from Orthanc's index."""
    study = _get(f"/studies/{study_id}")
    study_uid = study["MainDicomTags"]["StudyInstanceUID"]
    found = []
    for series_id in study["Series"]:
        series_uid = _get(f"/series/{series_id}")["MainDicomTags"]["SeriesInstanceUID"]
        for instance in _get(f"/series/{series_id}/instances"):
            sop_class = orthanc.RestApiGet(f"/instances/{instance['ID']}/metadata/SopClassUid")
            if isinstance(sop_class, bytes):
                sop_class = sop_class.decode()
            found.append((series_uid, sop_class.strip(), instance["MainDicomTags"]["SOPInstanceUID"]))
    return study_uid, found


class Bridge:
    def __init__(self) -> None:
        config = json.loads(orthanc.GetConfiguration())
        self.settings = Settings(config)
        if self.settings.retrieve_url is None:
            self.settings.retrieve_url = dicomweb_root(config, _get("/plugins"))
        self.queue = Queue(self.settings.queue)
        self.sender = Sender(self.settings, self.queue, _log)

    def stable_study(self, study_id: str) -> None:
        study_uid, instances = study_instances(study_id)
        for ian in build_ians(study_uid, instances, self.settings.retrieve_ae, self.settings.retrieve_url,
                              self.settings.max_instances):
            name = self.queue.put(ian)
            _log("info", f"study {study_uid} stable: queued IAN {name} "
                         f"({sum(len(s['00081199']['Value']) for s in ian['00081115']['Value'])} instances)")
        self.sender.wake.set()


_bridge: Bridge | None = None


def on_change(change_type, level, resource_id) -> None:
    global _bridge
    if change_type == orthanc.ChangeType.ORTHANC_STARTED:
        try:
            _bridge = Bridge()
        except BridgeConfigError as exc:
            _log("error", f"not started: {exc}")
            return
        _bridge.sender.start()
        _log("warning", f"notifying {_bridge.settings.url} as {_bridge.settings.retrieve_ae}"
                        f"{' at ' + _bridge.settings.retrieve_url if _bridge.settings.retrieve_url else ''}; "
                        f"{len(_bridge.queue.pending())} IANs waiting in {_bridge.settings.queue}")
    elif change_type == orthanc.ChangeType.STABLE_STUDY and _bridge is not None:
        try:
            _bridge.stable_study(resource_id)
        except Exception as exc:  # noqa: BLE001 - one bad study must not stop the bridge
            _log("error", f"study {resource_id} not queued: {exc.__class__.__name__}: {exc}")
    elif change_type == orthanc.ChangeType.ORTHANC_STOPPED and _bridge is not None:
        _bridge.sender.stop()
        _bridge.sender.join(5)


if orthanc is not None:
    orthanc.RegisterOnChangeCallback(on_change)
