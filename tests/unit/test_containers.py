"""Container decision rules and command construction (apptainer cannot be installed here: its argv is checked)."""

import types

import pytest

from pilot.errors import PilotError
from pilot.payload import containers as c


def job(**fields):
    base = dict(jobpars="-a 1", container_name="", cmtconfig="", container="")
    base.update(fields)
    return types.SimpleNamespace(**base)


def queue(container_type="", options=""):
    return types.SimpleNamespace(container_type=container_type, container_options=options)


def test_parse_container_type():
    assert c.parse_container_type("apptainer:pilot;docker:wrapper") == {"pilot": "apptainer", "wrapper": "docker"}
    assert c.parse_container_type("") == {}
    assert c.parse_container_type("junk;bwrap:pilot") == {"pilot": "bwrap"}


def test_image_option_is_cut_out_of_jobpars():
    assert c.split_image_option("--a 1 --containerImage docker://x/y:1 --b") == ("--a 1 --b", "docker://x/y:1")
    assert c.split_image_option("--containerImage=/img --b") == ("--b", "/img")
    assert c.split_image_option("--b") == ("--b", "")


def test_no_container_without_image_or_platform_runtime():
    assert c.plan_container(job(), queue("apptainer:pilot")) is None
    assert c.plan_container(job(cmtconfig="x86_64-el9"), queue("")) is None


def test_container_wanted_but_queue_has_no_runtime_is_1384():
    with pytest.raises(PilotError) as err:
        c.plan_container(job(container_name="/img"), queue("docker:wrapper"))
    assert err.value.code == 1384


def test_platform_without_image_is_1360(monkeypatch):
    monkeypatch.setattr(c.shutil, "which", lambda name: "/usr/bin/" + name)
    with pytest.raises(PilotError) as err:
        c.plan_container(job(cmtconfig="x86_64-el9"), queue("apptainer:pilot"))
    assert err.value.code == 1360


def test_missing_runtime_codes(monkeypatch):
    monkeypatch.setattr(c.shutil, "which", lambda name: None)
    for runtime, code in (("apptainer", 1372), ("singularity", 1325), ("podman", 1360)):
        with pytest.raises(PilotError) as err:
            c.plan_container(job(container_name="/img"), queue(f"{runtime}:pilot"))
        assert err.value.code == code


def test_unknown_runtime_is_a_configuration_error(monkeypatch):
    monkeypatch.setattr(c.shutil, "which", lambda name: "/bin/" + name)
    with pytest.raises(PilotError) as err:
        c.plan_container(job(container_name="img"), queue("docker:pilot"))
    assert err.value.code == 1341


def test_missing_image_dir_is_1360(monkeypatch, tmp_path):
    monkeypatch.setattr(c.shutil, "which", lambda name: "/bin/" + name)
    with pytest.raises(PilotError) as err:
        c.plan_container(job(container_name=str(tmp_path / "nope")), queue("bwrap:pilot"))
    assert err.value.code == 1360


def test_apptainer_command(monkeypatch, tmp_path):
    monkeypatch.setattr(c.shutil, "which", lambda name: "/bin/" + name)
    image = tmp_path / "img.sif"
    image.write_bytes(b"SIF")
    j = job(jobpars=f"--containerImage {image} --x 1")
    plan = c.plan_container(j, queue("singularity:pilot", "-B /cvmfs --cleanenv"))
    assert j.jobpars == "--x 1" and j.container == f"singularity:{image}"
    argv = c.wrap_command(plan, "./trf --x 1", "/w/PanDA_Pilot-1", {})
    assert argv == ["singularity", "exec", "-B", "/w/PanDA_Pilot-1", "--pwd", "/w/PanDA_Pilot-1", "-B", "/cvmfs",
                    "--cleanenv", str(image), "/bin/bash", "-c", "./trf --x 1"]


def test_podman_and_bwrap_commands(tmp_path):
    (tmp_path / "bin").mkdir()
    podman = c.wrap_command(c.ContainerPlan("podman", "docker.io/x:1"), "cmd", "/w", {"PandaID": "7", "SECRET": "s"})
    assert podman[:7] == ["podman", "run", "--rm", "-v", "/w:/w", "-w", "/w"]
    assert "PandaID=7" in podman and not any("SECRET" in arg for arg in podman)
    assert podman[-4:] == ["docker.io/x:1", "/bin/bash", "-c", "cmd"]
    rootfs = c.wrap_command(c.ContainerPlan("podman", str(tmp_path)), "cmd", "/w", {})
    assert rootfs[-5:] == ["--rootfs", str(tmp_path), "/bin/sh", "-c", "cmd"]  # no bash in the image
    bwrap = c.wrap_command(c.ContainerPlan("bwrap", str(tmp_path)), "cmd", "/w", {})
    assert bwrap[:4] == ["bwrap", "--ro-bind", str(tmp_path), "/"] and "--die-with-parent" in bwrap
    assert bwrap[-3:] == ["/bin/sh", "-c", "cmd"]


def test_failure_patterns():
    assert c.failure_code("INFO x\nFATAL: Failed to mount image /x.sif\n")[0] == 1309
    assert c.failure_code("Error: docker.io/nope: image not known")[0] == 1360
    assert c.failure_code("bwrap: Can't find source path /nonexistent: No such file")[0] == 1360
    assert c.failure_code("all fine") is None
