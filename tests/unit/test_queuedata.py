"""Queue data (schedconfig / CRIC pandaqueue JSON): sources, unit conversion, and every way it can be unusable."""

import json

import pytest

from pilot.errors import PilotError
from pilot.queuedata import BUILTIN_LOCAL, QueueData, from_dict, load_queuedata

# an abridged real CRIC pandaqueue object
CRIC = {
    "nickname": "CERN-PROD_UCORE", "panda_resource": "CERN-PROD_UCORE", "atlas_site": "CERN-PROD", "state": "ACTIVE",
    "status": "online", "type": "unified", "resource_type": "GRID", "timefloor": 60, "maxtime": 172800,
    "maxwdir": 32768, "maxinputsize": 14336, "maxrss": 16000, "corecount": 8,
    "copytools": {"rucio": {"setup": ""}, "xrdcp": {}}, "acopytools": {"pr": ["rucio"], "pw": ["rucio"], "pl": "xrdcp"},
    "astorages": {"pr": ["CERN-PROD_DATADISK"], "pw": ["CERN-PROD_DATADISK"]},
    "container_type": "apptainer:wrapper", "container_options": "-B /cvmfs", "catchall": "singularity_options",
    "environ": "", "params": {"job_maxwalltime": 1}, "gstat": "CERN-PROD", "is_cvmfs": True,
}


@pytest.fixture(autouse=True)
def no_server_url(monkeypatch):
    """$QUEUEDATA_SERVER_URL is a source of its own: keep the host's out of these tests."""
    monkeypatch.delenv("QUEUEDATA_SERVER_URL", raising=False)


def write(tmp_path, data, name="queuedata.json"):
    path = tmp_path / name
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return str(path)


def load_error(queue, url, code):
    with pytest.raises(PilotError) as caught:
        load_queuedata(queue, url)
    assert caught.value.code == code, caught.value
    return caught.value.diag


# --- built-in LOCAL ----------------------------------------------------------------------------------------

def test_builtin_local_queue():
    qd = load_queuedata("LOCAL")
    assert isinstance(qd, QueueData)
    assert (qd.name, qd.resource, qd.site, qd.state, qd.status) == ("LOCAL", "LOCAL", "LOCAL", "ACTIVE", "online")
    assert qd.timefloor == 0 and qd.maxtime == 0 and qd.corecount == 1
    assert qd.copytools == {"mv": {"setup": ""}}
    for activity in ("read_lan", "write_lan", "pl", "default"):
        assert qd.acopytools[activity] == ["mv"]


def test_builtin_local_queue_needs_no_file_and_writes_the_cache(tmp_path):
    cache = tmp_path / "queuedata.json"
    load_queuedata("LOCAL", cache_path=str(cache))
    assert json.loads(cache.read_text())["nickname"] == "LOCAL"


def test_a_named_source_wins_over_the_builtin_queue(tmp_path):
    qd = load_queuedata("LOCAL", write(tmp_path, dict(CRIC, nickname="LOCAL", timefloor=1)))
    assert qd.timefloor == 60 and qd.corecount == 8


def test_queuedata_server_url_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("QUEUEDATA_SERVER_URL", write(tmp_path, CRIC))
    assert load_queuedata("LOCAL").name == "CERN-PROD_UCORE"  # not the built-in queue any more


# --- files -------------------------------------------------------------------------------------------------

def test_plain_cric_object(tmp_path):
    qd = load_queuedata("CERN-PROD_UCORE", write(tmp_path, CRIC))
    assert qd.name == "CERN-PROD_UCORE" and qd.resource == "CERN-PROD_UCORE" and qd.site == "CERN-PROD"
    assert qd.type == "unified" and qd.resource_type == "GRID"
    assert qd.timefloor == 3600 and qd.maxtime == 172800 and qd.maxwdir == 32768 and qd.maxinputsize == 14336
    assert qd.maxrss == 16000 and qd.corecount == 8
    assert qd.acopytools == {"pr": ["rucio"], "pw": ["rucio"], "pl": ["xrdcp"]}  # a single name becomes a list
    assert qd.astorages["pr"] == ["CERN-PROD_DATADISK"] and qd.copytools["xrdcp"] == {}
    assert qd.container_type == "apptainer:wrapper" and qd.container_options == "-B /cvmfs"
    assert qd.catchall == "singularity_options" and qd.params == {"job_maxwalltime": 1}
    assert qd.raw["is_cvmfs"] is True


def test_wrapped_name_object_document(tmp_path):
    """CRIC's {pandaqueue}.all.json and the pandaqueues dump are {name: object}."""
    inner = {key: value for key, value in CRIC.items() if key != "nickname"}
    qd = load_queuedata("CERN-PROD_UCORE", write(tmp_path, {"CERN-PROD_UCORE": inner, "OTHER": {"state": "x"}}))
    assert qd.name == "CERN-PROD_UCORE" and qd.corecount == 8 and qd.timefloor == 3600
    assert from_dict({"Q": {"nickname": "Q", "corecount": 4}}, "Q").corecount == 4


def test_file_url_and_template_with_the_queue_name(tmp_path):
    path = write(tmp_path, CRIC, "CERN-PROD_UCORE.all.json")
    assert load_queuedata("CERN-PROD_UCORE", "file://" + path).corecount == 8
    template = str(tmp_path / "{pandaqueue}.all.json")
    assert load_queuedata("CERN-PROD_UCORE", template=template).corecount == 8


def test_cache_is_a_copy_of_the_raw_data(tmp_path):
    cache = tmp_path / "cache.json"
    load_queuedata("CERN-PROD_UCORE", write(tmp_path, CRIC), cache_path=str(cache))
    assert json.loads(cache.read_text())["maxtime"] == 172800


@pytest.mark.parametrize("minutes,seconds", [(0, 0), (1, 60), ("15", 900), (None, 0), ("NULL", 0), ("", 0),
                                             (2.0, 120)])
def test_timefloor_minutes_become_seconds(tmp_path, minutes, seconds):
    assert load_queuedata("Q", write(tmp_path, {"nickname": "Q", "timefloor": minutes})).timefloor == seconds


def test_defaults_of_an_almost_empty_object(tmp_path):
    qd = load_queuedata("Q", write(tmp_path, {}))
    assert (qd.name, qd.resource, qd.state, qd.status, qd.corecount) == ("Q", "Q", "ACTIVE", "online", 1)
    assert qd.acopytools == {} and qd.copytools == {} and qd.params == {}
    assert load_queuedata("Q", write(tmp_path, {"corecount": "NULL"})).corecount == 1
    assert load_queuedata("Q", write(tmp_path, {"corecount": 0})).corecount == 1


# --- unusable queues and queue data ------------------------------------------------------------------------

@pytest.mark.parametrize("state", ["BROKEROFF", "OFFLINE", "TEST", "obsolete"])
def test_not_active_is_1359(tmp_path, state):
    diag = load_error("Q", write(tmp_path, {"nickname": "Q", "state": state}), 1359)
    assert state in diag and "not ACTIVE" in diag


def test_state_is_case_insensitive(tmp_path):
    assert load_queuedata("Q", write(tmp_path, {"state": "active"})).state == "active"


@pytest.mark.parametrize("status", ["offline", "OFFLINE"])
def test_offline_is_1386(tmp_path, status):
    assert "offline" in load_error("Q", write(tmp_path, {"nickname": "Q", "status": status}), 1386)


@pytest.mark.parametrize("status", ["online", "test", "brokeroff"])
def test_other_statuses_are_usable(tmp_path, status):
    assert load_queuedata("Q", write(tmp_path, {"status": status})).status == status


def test_missing_file_is_1116(tmp_path):
    diag = load_error("Q", str(tmp_path / "absent.json"), 1116)
    assert "absent.json" in diag
    load_error("Q", "file://" + str(tmp_path / "absent.json"), 1116)


def test_no_source_for_a_real_queue_is_1116():
    assert "no queue data source" in load_error("CERN-PROD_UCORE", "", 1116)


@pytest.mark.parametrize("text", ["{not json", "", "{\"a\": 1,}", "nickname: Q"])
def test_bad_json_is_1117(tmp_path, text):
    assert "not valid JSON" in load_error("Q", write(tmp_path, text), 1117)


@pytest.mark.parametrize("data", [[1, 2], "a string", 42, None])
def test_json_that_is_not_an_object_is_1117(tmp_path, data):
    load_error("Q", write(tmp_path, json.dumps(data)), 1117)


@pytest.mark.parametrize("acopytools", [
    ["mv"], "mv", 7,  # not an object
    {"pr": [1]}, {"pr": ["mv", None]}, {"pr": {"mv": 1}}, {"pr": 5}, {"pw": ["mv"], "pr": [["mv"]]},
])
def test_bad_acopytools_is_1117(tmp_path, acopytools):
    diag = load_error("Q", write(tmp_path, {"nickname": "Q", "acopytools": acopytools}), 1117)
    assert "acopytools" in diag


@pytest.mark.parametrize("field,value", [("timefloor", "x"), ("maxtime", [1]), ("maxwdir", {"a": 1}),
                                         ("corecount", "eight"), ("timefloor", "inf"), ("maxrss", "nan"),
                                         ("copytools", ["mv"]), ("astorages", "DISK"), ("params", [1])])
def test_wrong_field_types_are_1117(tmp_path, field, value):
    assert field in load_error("Q", write(tmp_path, {"nickname": "Q", field: value}), 1117)


def test_huge_numbers_in_json_are_1117_not_a_crash(tmp_path):
    # json.loads turns 1e999 into a float infinity
    load_error("Q", write(tmp_path, '{"nickname": "Q", "maxtime": 1e999}'), 1117)


def test_undecodable_file_is_refused(tmp_path):
    with pytest.raises(PilotError) as caught:
        load_queuedata("Q", write(tmp_path, b'{"nickname": "caf\xe9"}'))
    assert caught.value.code in (1116, 1117)


def test_builtin_queue_is_not_changed_by_loading_it():
    before = json.dumps(BUILTIN_LOCAL, sort_keys=True)
    load_queuedata("LOCAL")
    from_dict(dict(BUILTIN_LOCAL, acopytools={"pr": "mv"}), "LOCAL")
    assert json.dumps(BUILTIN_LOCAL, sort_keys=True) == before
