"""The cgroup v2 per job, on fake cgroup trees (a real one is used in tests/reliability/test_leftovers.py)."""

import os
import subprocess
import sys

from pilot import ownprocs
from pilot.payload.cgroup import JobCgroup, cgroup2_mount, own_cgroup_dir, remove_stale


def fake_tree(tmp_path, controllers="cpu memory pids"):
    root = tmp_path / "cg"
    (root / "pilot.slice").mkdir(parents=True)
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text("22 1 0:21 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
                         f"35 1 0:30 / {root} rw,nosuid - cgroup2 cgroup2 rw\n")
    proc_cgroup = tmp_path / "cgroup"
    proc_cgroup.write_text("4:memory:/x\n0::/pilot.slice\n")
    return root, str(mountinfo), str(proc_cgroup)


def test_own_cgroup_dir_on_a_hybrid_node(tmp_path):
    root, mountinfo, proc_cgroup = fake_tree(tmp_path)
    assert cgroup2_mount(mountinfo) == str(root)
    assert own_cgroup_dir(proc_cgroup, mountinfo) == str(root / "pilot.slice")


def test_no_cgroup2_means_no_cgroup_per_job(tmp_path):
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text("22 1 0:21 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n")
    assert own_cgroup_dir(str(tmp_path / "nope"), str(mountinfo)) is None
    assert JobCgroup.create(None, "pilot.1.job.2") is None


def test_create_sets_memory_max_when_the_controller_is_delegated(tmp_path):
    parent = tmp_path / "parent"
    parent.mkdir()
    # what the kernel would put in a new group; mkdir on a fake tree makes an empty dir, so pre-fill it
    group_dir = parent / "pilot.1.job.7"
    group_dir.mkdir()
    for name, text in (("cgroup.kill", ""), ("cgroup.controllers", "cpu memory pids\n"), ("memory.max", "max\n"),
                       ("cgroup.procs", "")):
        (group_dir / name).write_text(text)
    group = JobCgroup.create(str(parent), "pilot.1.job.7", memory_max_bytes=3 << 30)
    assert group is not None and (group_dir / "memory.max").read_text() == str(3 << 30)
    assert group.pids() == [] and group.kill() is False  # nobody to kill


def test_create_without_cgroup_kill_degrades(tmp_path):
    parent = tmp_path / "parent"
    parent.mkdir()
    assert JobCgroup.create(str(parent), "pilot.1.job.8") is None  # an old kernel: no cgroup.kill
    assert not (parent / "pilot.1.job.8").exists()


def test_shim_runs_the_command_even_when_the_move_fails(tmp_path):
    group = JobCgroup(str(tmp_path / "missing"))
    done = subprocess.run(group.shim([sys.executable, "-c", "print('ran')"]), capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout == "ran\n" and done.stderr == ""


def test_helpers_are_registered_while_they_run():
    with ownprocs.helper([sys.executable, "-c", "import time; time.sleep(5)"]) as proc:
        with ownprocs.scanning() as helpers:
            assert proc.pid in helpers
    with ownprocs.scanning() as helpers:
        assert proc.pid not in helpers
    assert proc.returncode is not None and os.path.exists("/proc") is True


def test_stale_job_cgroups_of_gone_pilots_are_removed(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    names = {"dead": f"pilot.{dead.pid}.job.1", "mine": f"pilot.{os.getpid()}.job.2",
             "alive": f"pilot.{os.getppid()}.job.3", "other": "user.slice", "busy": f"pilot.{dead.pid}.job.4"}
    for name in names.values():
        (tmp_path / name).mkdir()
    (tmp_path / names["busy"] / "cgroup.procs").write_text("123\n")  # rmdir refuses a group with members
    assert remove_stale(str(tmp_path)) == 1
    assert sorted(os.listdir(tmp_path)) == sorted(names[k] for k in ("mine", "alive", "other", "busy"))
    assert remove_stale(str(tmp_path), including_own=True) == 1
    assert not (tmp_path / names["mine"]).exists() and (tmp_path / names["alive"]).exists()
