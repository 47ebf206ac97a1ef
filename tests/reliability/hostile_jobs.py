"""Random hostile job files for the acceptance run (tests/reliability/test_acceptance.py), from a fixed seed.

Each generated file says which PandaIDs a pilot that claims it must report (`expect`): none for a file without a
usable id (it cannot be reported), every id of a multi-job file, the id a too-deeply nested file names. Payloads
attack the pilot from inside the job dir: symlinks from the files it reads or writes to a canary outside, FIFOs,
children that outlive the payload or ignore SIGTERM.
"""

import json
import os
import random
from dataclasses import dataclass, field
from typing import List

from tests.e2e.pilotrun import job_definition

CANARY_TEXT = "CANARY-0c9f2e71d4"
SIGNALS = ("SIGTERM", "SIGINT", "SIGUSR1", "SIGXCPU", "SIGQUIT", "SIGHUP")

# payload scripts (sh -c '...'); {canary}: a file outside with CANARY_TEXT; {victim}: a path outside that must
# never be created or written; {log}: the job's log tarball name
PAYLOADS = {
    "ok": (30, "echo fine"),
    "fail": (8, "echo bad >&2; exit {code}"),
    "sleep": (6, "sleep {sleep}"),
    "read symlinks": (6, "ln -sf {canary} jobReport.json; ln -sf {canary} payload_error_report.json; "
                         "ln -sf {canary} payload.stderr; exit 3"),
    "fifos": (4, "mkfifo jobReport.json payload_error_report.json; exit 0"),
    "write symlinks": (5, "ln -sf {victim} memory_monitor_output.txt; ln -sf {victim} memory_monitor_summary.json;"
                          " ln -sf {victim} {log}.part; exit 0"),
    "child left": (4, "sleep 30 & echo left a child"),
    "stubborn child": (3, "(trap \"\" TERM; sleep 30) & sleep 0.1"),
    "output symlink": (3, "ln -sf {canary} out.dat; exit 0"),
}

DEFINITION_ATTACKS = [
    {"outFiles": "../../escape.txt", "scopeOut": "x"},
    {"outFiles": "/etc/passwd", "scopeOut": "x"},
    {"inFiles": "$(touch CANARY_RAN)", "fsize": "1", "checksum": "ad:00000001"},
    {"outFiles": "a\nb", "scopeOut": "x"},
    {"outFiles": "x" * 256, "scopeOut": "x"},
    {"inFiles": "a,b", "fsize": "1", "checksum": "ad:1,ad:2"},
    {"jobPars": {"not": "a string"}},
    {"jobPars": "y" * 2_000_000},
    {"coreCount": "1e999"},
    {"maxCpuCount": [1, 2]},
    {"transformation": None},
    {"attemptNr": "\u00b2"},
]


@dataclass
class JobFile:
    name: str
    kind: str
    expect: List[int] = field(default_factory=list)  # PandaIDs that must be reported once claimed


class Generator:
    def __init__(self, seed: int, outside: str, first_id: int):
        self.rnd = random.Random(seed)
        self.outside = outside
        self.canary = os.path.join(outside, "canary.txt")
        self.next_id = first_id
        self.ids: List[int] = []
        self.count = 0

    def _id(self) -> int:
        self.next_id += 1
        self.ids.append(self.next_id)
        return self.next_id

    def _payload_job(self, panda_id: int, kinds=None) -> dict:
        names = [k for k in PAYLOADS if kinds is None or k in kinds]
        kind = self.rnd.choices(names, weights=[PAYLOADS[k][0] for k in names])[0]
        script = PAYLOADS[kind][1].format(
            code=self.rnd.randint(1, 255), sleep=round(self.rnd.uniform(0.1, 1.0), 2), canary=self.canary,
            victim=os.path.join(self.outside, f"victim-{panda_id}"), log=f"{panda_id}.job.log.tgz")
        outputs = ["out.dat"] if kind == "output symlink" else []
        job = job_definition(panda_id, pars=f"-c '{script}'", outputs=outputs, log=self.rnd.random() < 0.3)
        if outputs:
            job["scopeOut"] = ",".join(["test"] * (len(outputs)))
        return job

    def write(self, folder: str, kinds=None) -> JobFile:
        """One random job file in `folder`; `kinds` limits payloads (for the signal runs)."""
        self.count += 1
        stem = f"j{self.count:05d}"
        path = os.path.join(folder, f"{stem}.json")
        roll = self.rnd.random()
        if kinds is not None or roll < 0.62:
            panda_id = self._id()
            _dump(path, self._payload_job(panda_id, kinds))
            return JobFile(path, "payload", [panda_id])
        if roll < 0.74:
            panda_id = self._id()
            job = job_definition(panda_id, pars="-c 'touch CANARY_RAN'")
            job.update(self.rnd.choice(DEFINITION_ATTACKS))
            job = {key: value for key, value in job.items() if value is not None}
            _dump(path, job)
            return JobFile(path, "hostile definition", [panda_id])
        if roll < 0.80:
            ids = [self._id() for _ in range(self.rnd.randint(2, 5))]
            _dump(path, {str(i): self._payload_job(i, ("ok", "fail")) for i in ids})
            return JobFile(path, "multi-job file", ids)
        if roll < 0.84 and self.ids:
            panda_id = self.rnd.choice(self.ids)  # a duplicate: reported once in all
            _dump(path, self._payload_job(panda_id, ("ok",)))
            return JobFile(path, "duplicate id", [panda_id])
        if roll < 0.87:
            panda_id = self._id()
            depth = self.rnd.choice((900, 5_000, 100_000))
            with open(path, "w") as handle:
                handle.write(f'{{"PandaID": "{panda_id}", "transformation": "sh", "jobPars": '
                             + "[" * depth + "]" * depth + "}")
            return JobFile(path, "deep nesting", [panda_id])
        if roll < 0.89:
            os.mkfifo(path)
            return JobFile(path, "fifo")
        if roll < 0.90:
            os.mkdir(path)
            return JobFile(path, "directory")
        junk = self.rnd.choice([b"{oops", b"", b"[1, 2, 3]", b'{"transformation": "sh"}', b'{"PandaID": "\xff"}',
                                b'{"PandaID": "-4"}', b"null", b'{"PandaID": true}'])
        with open(path, "wb") as handle:
            handle.write(junk)
        return JobFile(path, "junk")


def _dump(path: str, data) -> None:
    with open(path, "w") as handle:
        json.dump(data, handle)
