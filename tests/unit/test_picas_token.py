"""PiCaS tokens -> jobs (no server): fields, inputs from the token and srm.txt, ids, GRID_LRT codes, credentials."""


import pytest

from pilot.channels.picas import read_credentials
from pilot.channels.picas_couch import split_target
from pilot.channels.picas_token import grid_lrt_code, synthetic_panda_id, token_job, views
from pilot.config import load_config
from pilot.errors import PilotError

SARA = "srm://srm.grid.sara.nl:8443/pnfs/grid.sara.nl/data/lofar/ops/L229507/L229507_SB{:03d}_uv.MS_f6.tar"


def cfg(**values):
    env = {f"PILOT_CFG_PICAS_{key.upper()}": str(value) for key, value in values.items()}
    return load_config(env=env).picas


def make(token, attachment=None, **config):
    doc = {"_id": "tok1", "type": "token", "lock": 1700000000, "done": 0, "scrub_count": 0}
    doc.update(token)
    return token_job(doc, "lofardb", cfg(**config), attachment, 1 << 20, "http://127.0.0.1:5984/lofardb")


def test_command_parameters_env_and_sandbox():
    job, urls = make({"command": "echo $MODE", "parameters": ["a b", "c"], "SBXloc": "https://h/sbx.tgz",
                      "env": {"MODE": "cal"}, "OBSID": "L229507"})
    assert not job.failed and urls == []
    assert job.transformation == "bash" and job.jobpars == "-c 'echo $MODE '\"'\"'a b'\"'\"' c'"
    assert job.sandbox == "https://h/sbx.tgz"
    assert job.environment == {"MODE": "cal", "TOKEN": "tok1", "PICAS_DB": "lofardb",
                               "PICAS_URL": "http://127.0.0.1:5984/lofardb"}
    assert job.sandbox_fields["OBSID"] == "L229507"
    assert job.attemptnr == 1 and job.jobid == synthetic_panda_id("lofardb", "tok1", 1700000000)


def test_script_from_the_sandbox():
    job, _ = make({"script": "launch.sh", "arguments": "--step cal1", "sandbox": "/srv/sbx.tar"})
    assert job.jobpars == "launch.sh --step cal1" and job.sandbox == "/srv/sbx.tar"


def test_inputs_from_field_and_attachment():
    field = [SARA.format(1), SARA.format(2)]
    attachment = f"{SARA.format(2)}\n{SARA.format(3)} second-column\n\n"
    job, urls = make({"command": "true", "input": field}, attachment)
    assert urls == [SARA.format(1), SARA.format(2), SARA.format(3)]
    assert [spec.lfn for spec in job.inputs] == [f"L229507_SB{n:03d}_uv.MS_f6.tar" for n in (1, 2, 3)]
    assert job.inputs[0].turl == SARA.format(1)
    job, _ = make({"command": "true", "input": "\n".join(field)}, None, surl_form="gsiftp")
    assert job.inputs[1].turl.startswith("gsiftp://gridftp.grid.sara.nl:2811/pnfs/")


def test_bad_tokens_become_failed_jobs():
    job, _ = make({})
    assert job.error_code == 1008 and "neither a command nor a script" in job.error_diag
    job, _ = make({"command": "true", "input": [SARA.format(1), SARA.format(1).replace("L229507_", "L229508_")]})
    assert job.error_code == 1302 and "OBSID L229508" in job.error_diag
    job, _ = make({"command": "true", "env": {"1x": "y"}})
    assert job.error_code == 1302
    job, _ = make({"command": "true", "parameters": {"a": 1}})
    assert job.error_code == 1302
    job, _ = make({"command": "true", "scrub_count": "many", "lock": "soon"})  # junk counters: no traceback
    assert not job.failed and job.attemptnr == 1


def test_ids_are_stable_and_distinct_per_claim():
    first = synthetic_panda_id("db", "t1", 100)
    assert first == synthetic_panda_id("db", "t1", 100) and first.isdigit() and len(first) <= 15
    assert len({first, synthetic_panda_id("db", "t1", 101), synthetic_panda_id("db", "t2", 100),
                synthetic_panda_id("db2", "t1", 100)}) == 4


@pytest.mark.parametrize("code,diag,lrt", [
    (0, "", 0), (1246, "", -2), (1364, "", 1), (1099, "input x is not staged (NEARLINE)", 22), (1099, "other", 21),
    (1110, "variable X is not set in the job (GRID_LRT code 1)", 1), (1110, "unsafe", 12), (1331, "", 20),
    (1137, "", 31), (1333, "", 32), (1212, "", 97), (1305, "", 99), (1144, "", 99)])
def test_grid_lrt_codes(code, diag, lrt):
    assert grid_lrt_code(code, diag) == lrt


def test_views_select_the_token_type():
    made = views("token")
    assert set(made) >= {"todo", "locked", "done", "error"}
    assert 'doc.type == "token" && doc.lock == 0 && doc.done == 0' in made["todo"]["map"]
    assert "doc.type" not in views("")["todo"]["map"]


def test_credentials(monkeypatch, tmp_path):
    for name in ("PICAS_USER", "PICAS_PASSWORD", "PICAS_USR", "PICAS_USR_PWD"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(PilotError) as info:
        read_credentials("http://127.0.0.1:5984/db", "")
    assert info.value.code == 1364 and "PICAS_USER and PICAS_PASSWORD" in info.value.diag
    with pytest.raises(PilotError) as info:
        read_credentials("http://127.0.0.1:5984/db", str(tmp_path / "nofile"))
    assert info.value.code == 1364
    creds = tmp_path / "picas.cred"
    creds.write_text("user = alice\npassword = s3cret\n")
    assert read_credentials("http://127.0.0.1:5984/db", str(creds)) == ("http://127.0.0.1:5984", "db",
                                                                         ("alice", "s3cret"))
    monkeypatch.setenv("PICAS_USR", "bob")
    monkeypatch.setenv("PICAS_USR_PWD", "pw")
    assert read_credentials("https://h:6984/db", "")[2] == ("bob", "pw")
    assert read_credentials("https://carol:x@h:6984/db", "") == ("https://h:6984", "db", ("carol", "x"))
    with pytest.raises(PilotError, match="URL/DATABASE"):
        read_credentials("http://h:5984", "")
    with pytest.raises(ValueError, match="http"):
        split_target("h:5984/db")


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, '{"rows": [', "[1, 2]"])
def test_corrupt_or_absurdly_nested_couchdb_answer_is_unavailable(text):
    import json

    from pilot.channels.picas_couch import Unavailable, _body

    class Reply:
        status_code = 200

        def json(self):
            return json.loads(text)

    with pytest.raises(Unavailable):
        _body(Reply())
