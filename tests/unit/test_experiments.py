"""Experiment plug-ins: the hooks run around the payload in its own shell; failures become 1356/1357."""

import os
import subprocess
import time
import types

import pytest

from pilot.errors import PilotError
from pilot.experiments import experiment, known_experiments
from pilot.experiments.base import Experiment
from pilot.experiments.hooks import HOOK_FAILURE_FILE, hook_failure, wrap_payload


class Probe(Experiment):
    name = "probe"

    def __init__(self, pre=(), post=(), coprocess=None, setup=()):
        self.pre, self.post, self.co, self.setup = list(pre), list(post), coprocess, list(setup)

    def setup_commands(self, job, ctx):
        return self.setup

    def preprocess(self, job, ctx):
        return self.pre

    def postprocess(self, job, ctx):
        return self.post

    def coprocess(self, job, ctx):
        return self.co


def run(tmp_path, plugin, payload):
    script = wrap_payload(payload, plugin, None, None)
    done = subprocess.run(["/bin/bash", "-c", script], cwd=str(tmp_path), capture_output=True, text=True, timeout=20)
    return done.returncode, hook_failure(str(tmp_path))


def test_generic_adds_nothing():
    assert wrap_payload("sh -c 'exit 0'", Experiment(), None, None) == "sh -c 'exit 0'"


def test_setup_pre_post_run_in_order(tmp_path):
    plugin = Probe(setup=["export STEP=setup"], pre=["echo pre:$STEP >> log"], post=["echo post >> log"])
    code, failure = run(tmp_path, plugin, "echo payload:$STEP >> log")
    assert (code, failure) == (0, None)
    assert (tmp_path / "log").read_text().split() == ["pre:setup", "payload:setup", "post"]


def test_failing_preprocess_stops_before_the_payload_1356(tmp_path):
    code, failure = run(tmp_path, Probe(pre=["exit 3"]), "touch ran")
    assert code == 3 and failure == (1356, "preprocess command failed with exit 3: exit 3")
    assert not (tmp_path / "ran").exists() and not (tmp_path / HOOK_FAILURE_FILE).exists()


def test_failing_postprocess_is_1357_and_skipped_after_a_failed_payload(tmp_path):
    code, failure = run(tmp_path, Probe(post=["printf '%s' 100% >/dev/null; exit 4"]), "true")
    assert code == 4 and failure[0] == 1357 and "100%" in failure[1]
    code, failure = run(tmp_path, Probe(post=["touch post"]), "exit 9")
    assert (code, failure) == (9, None) and not (tmp_path / "post").exists()


def test_coprocess_runs_alongside_and_is_stopped(tmp_path):
    plugin = Probe(coprocess="while :; do echo tick >> co; sleep 0.05; done")
    code, _ = run(tmp_path, plugin, "sleep 0.5")
    assert code == 0
    ticks = (tmp_path / "co").read_text().count("tick")
    assert ticks >= 2
    time.sleep(0.3)
    assert (tmp_path / "co").read_text().count("tick") == ticks  # no tick after the payload ended


def test_registry_names_and_unknown_refused():
    assert {"generic", "example"} <= set(known_experiments())
    assert experiment("Example").name == "example"
    with pytest.raises(PilotError):
        experiment("atlas")


def test_example_binds_cvmfs_only_when_present():
    ctx = types.SimpleNamespace(queuedata=types.SimpleNamespace(name="Q"))
    binds = experiment("example").container_binds(None, ctx)
    assert binds == (["/cvmfs"] if os.path.isdir("/cvmfs") else [])


@pytest.mark.parametrize("runtime, expected", [("apptainer", ["-B", "/cvmfs"]), ("podman", ["-v", "/cvmfs:/cvmfs:ro"]),
                                               ("bwrap", ["--ro-bind", "/cvmfs", "/cvmfs"])])
def test_container_binds_reach_every_runtime(runtime, expected):
    from pilot.payload.containers import ContainerPlan, wrap_command

    argv = wrap_command(ContainerPlan(runtime, "/images/x", binds=["/cvmfs"]), "cmd", "/w", {})
    assert any(argv[i:i + len(expected)] == expected for i in range(len(argv)))
