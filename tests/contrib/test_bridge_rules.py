"""The Orthanc bridge's pure parts, outside Orthanc: the IANs it builds pass wfm's own IAN rules, a
large study is split, wfm's answers are classified so that nothing retriable is dropped and nothing
refused is retried forever, and a bad WorkflowManager section is refused naming the key."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from workflow.ian.rules.notification import parse_ian

spec = importlib.util.spec_from_file_location(
    "wfm_bridge", Path(__file__).resolve().parents[2] / "contrib" / "orthanc" / "wfm_bridge.py")
bridge = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bridge)

CT = "1.2.840.10008.5.1.4.1.1.2"


def instances(series: int, each: int) -> list[tuple[str, str, str]]:
    return [(f"1.2.3.{s}", CT, f"1.2.3.{s}.{i}") for s in range(series) for i in range(each)]


def test_the_ian_passes_wfms_rules_with_ae_and_url():
    [ian] = bridge.build_ians("1.2.3", instances(2, 3), "ORTHANC", "http://pacs/dicom-web", 100)
    uid = ian.pop("00080018")["Value"][0]
    assert uid.startswith("2.25.")
    parsed = parse_ian(ian, 100, type2_absent="refuse")
    assert parsed.study_instance_uid == "1.2.3" and len(parsed.instances) == 6 and not parsed.warnings
    first = parsed.instances[0]
    assert first.retrieve_ae_titles == ("ORTHANC",) and first.availability.name == "ONLINE"
    assert first.retrieve_url == f"http://pacs/dicom-web/studies/1.2.3/series/{first.series_instance_uid}" \
                                 f"/instances/{first.sop_instance_uid}"


def test_without_dicomweb_no_url():
    [ian] = bridge.build_ians("1.2.3", instances(1, 1), "ORTHANC", None, 100)
    ian.pop("00080018")
    assert parse_ian(ian, 100).instances[0].retrieve_url is None


def test_a_large_study_is_split_and_every_instance_named_once():
    ians = bridge.build_ians("1.2.3", instances(3, 7), "ORTHANC", None, 5)
    assert len(ians) == 5 and len({ian["00080018"]["Value"][0] for ian in ians}) == 5
    named = []
    for ian in ians:
        ian = dict(ian)
        ian.pop("00080018")
        named += [i.sop_instance_uid for i in parse_ian(ian, 5).instances]
    assert sorted(named) == sorted(sop for _, _, sop in instances(3, 7))


@pytest.mark.parametrize("code, outcome", [
    (200, "done"), (None, "retry"), (503, "retry"), (500, "retry"), (502, "retry"), (401, "retry"),
    (403, "retry"), (429, "retry"), (400, "failed"), (409, "failed"), (413, "failed")])
def test_answers(code, outcome):
    assert bridge.classify(code) == outcome


@pytest.mark.parametrize("section, key", [
    (None, "WorkflowManager"), ({}, "Url"), ({"Url": "wfm:8080"}, "Url"),
    ({"Url": "http://wfm", "RetrieveAETitle": "A" * 17}, "RetrieveAETitle"),
    ({"Url": "http://wfm", "RetryMaxInterval": 0}, "RetryMaxInterval"),
    ({"Url": "http://wfm", "MaxInstancesPerIan": "many"}, "MaxInstancesPerIan")])
def test_a_bad_section_names_the_key(section, key):
    config = {} if section is None else {"WorkflowManager": section}
    with pytest.raises(bridge.BridgeConfigError, match=key):
        bridge.Settings(config)


def test_defaults_follow_orthancs_own_settings(tmp_path):
    settings = bridge.Settings({"DicomAet": "PACS1", "StorageDirectory": str(tmp_path),
                                "WorkflowManager": {"Url": "http://wfm:8080/"}})
    assert (settings.url, settings.retrieve_ae, settings.queue) == (
        "http://wfm:8080", "PACS1", str(tmp_path / "wfm-bridge"))
    config = {"HttpPort": 8042, "DicomWeb": {"Host": "pacs:8042", "Root": "/dicom-web/", "Ssl": True}}
    assert bridge.dicomweb_root(config, ["dicom-web"]) == "https://pacs:8042/dicom-web"
    assert bridge.dicomweb_root(config, ["python"]) is None


def test_the_queue_keeps_order_and_sets_refused_ones_aside(tmp_path):
    queue = bridge.Queue(str(tmp_path))
    names = [queue.put({"00080018": {"vr": "UI", "Value": [f"2.25.{n}"]}}) for n in range(3)]
    assert queue.pending() == names
    queue.set_aside(names[0])
    queue.done(names[1])
    assert queue.pending() == [names[2]] and (tmp_path / "failed" / names[0]).exists()


def test_the_conformance_statement_says_what_the_bridge_does():
    from workflow.conformance.inventory import BRIDGE_RETRIED, BRIDGE_SET_ASIDE

    assert all(bridge.classify(code) == "failed" for code in BRIDGE_SET_ASIDE)
    for said in BRIDGE_RETRIED:
        code = {"no answer": None, "5xx": 503}.get(said, int(said) if said.isdigit() else None)
        assert bridge.classify(code) == "retry"
