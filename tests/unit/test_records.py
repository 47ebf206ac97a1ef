"""Records (jobs, files, settings, config sections) and random ids: what the generated dataclass code used to give."""

import dataclasses
import subprocess
import sys
import uuid

import pytest

from pilot.config import load_config
from pilot.ids import new_hex_uuid, new_uuid
from pilot.job import FileSpec, Job
from pilot.records import FrozenRecord, Record, frozen_record, record
from pilot.settings import Settings


@frozen_record
class Point(FrozenRecord):
    """A test record."""

    x: int
    y: int = 2
    tags: list = dataclasses.field(default_factory=list)


@record
class Account(Record):
    name: str
    balance: int = 0
    secret: str = dataclasses.field(default="", repr=False)
    cache: dict = dataclasses.field(default_factory=dict, compare=False)


def test_a_record_is_a_dataclass_built_by_keyword_with_defaults():
    point = Point(x=1)
    assert (point.x, point.y, point.tags) == (1, 2, [])
    assert dataclasses.is_dataclass(point)
    assert [item.name for item in dataclasses.fields(Point)] == ["x", "y", "tags"]
    assert dataclasses.asdict(point) == {"x": 1, "y": 2, "tags": []}
    assert Point(x=1).tags is not Point(x=1).tags  # default_factory called per instance


def test_a_record_refuses_unknown_and_missing_fields():
    with pytest.raises(TypeError, match="unexpected keyword argument.*: z"):
        Point(x=1, z=3)
    with pytest.raises(TypeError, match="missing argument: 'x'"):
        Point(y=1)


def test_a_record_is_read_only():
    point = Point(x=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        point.x = 5
    with pytest.raises(dataclasses.FrozenInstanceError):
        del point.y
    assert point.x == 1


def test_replace_equality_hash_and_repr():
    point = Point(x=1, y=3)
    moved = dataclasses.replace(point, y=4)
    assert (moved.x, moved.y) == (1, 4) and point.y == 3
    assert Point(x=1, y=3) == point and moved != point
    assert hash(Point(x=1, y=3, tags=())) == hash(Point(x=1, y=3, tags=()))
    assert repr(point) == "Point(x=1, y=3, tags=[])"
    assert point != (1, 3, [])


def test_only_a_record_subclass_can_be_declared():
    with pytest.raises(TypeError, match="must derive from FrozenRecord"):
        frozen_record(type("Loose", (), {"__annotations__": {"x": "int"}}))
    with pytest.raises(TypeError, match="must derive from Record"):
        record(type("Loose", (), {"__annotations__": {"x": "int"}}))


def test_a_mutable_record_takes_positions_or_keywords_and_can_change():
    account = Account("alice", 5)
    assert (account.name, account.balance, account.secret, account.cache) == ("alice", 5, "", {})
    account.balance += 1
    assert account.balance == 6
    assert Account("bob", balance=2).balance == 2
    with pytest.raises(TypeError, match="multiple values for argument 'name'"):
        Account("bob", name="carol")
    with pytest.raises(TypeError, match="takes 4 positional argument"):
        Account("a", 1, "s", {}, 5)
    with pytest.raises(TypeError, match="unhashable"):
        hash(account)


def test_repr_hides_repr_false_fields_and_eq_skips_compare_false_ones():
    account = Account("alice", secret="hunter2")
    assert repr(account) == "Account(name='alice', balance=0, cache={})"
    other = Account("alice", secret="hunter2", cache={"x": 1})
    assert account == other and account != Account("alice", secret="other")
    assert account.__eq__("alice") is NotImplemented


def test_a_job_keeps_its_secrets_out_of_its_repr():
    job = Job("42", secrets="TOKEN-VALUE", pilotsecrets="PILOT-SECRET")
    job.inputs.append(FileSpec("a.root", "input"))
    text = repr(job)
    assert "TOKEN-VALUE" not in text and "PILOT-SECRET" not in text and "a.root" in text
    assert Job("42").inputs is not Job("42").inputs


def test_settings_and_config_are_frozen_records():
    settings = Settings(queue="Q")
    assert settings.pilot_user == "generic" and settings == Settings(queue="Q")
    config = load_config(env={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.pilot.heartbeat = 1
    assert dataclasses.replace(config.pilot, heartbeat=7).heartbeat == 7


def test_ids_are_rfc4122_version_4():
    seen = set()
    for _ in range(200):
        text = new_uuid()
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 4 and parsed.variant == uuid.RFC_4122
        seen.add(text)
    assert len(seen) == 200
    hexed = new_hex_uuid()
    assert len(hexed) == 32 and uuid.UUID(hexed).version == 4


def test_start_up_imports_neither_uuid_nor_platform():
    """uuid imports platform (~5 ms of regexes) on Linux: neither belongs to a pilot's start-up path."""
    code = ("import sys, pilot.main, pilot.pipeline, pilot.channels.local, pilot.jobparser, pilot.transfer.traces;"
            "print(sorted(m for m in ('uuid', 'platform') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
