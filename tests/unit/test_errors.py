"""The error table is PanDA's contract: it must match the spec table exactly."""

import os
import re
import signal

import pytest

from pilot import errors
from tests.conftest import REPO

SPEC = os.path.join(REPO, "..", "shared", "spec", "pilot3-reference.md")


def spec_table():
    rows = {}
    with open(SPEC, encoding="utf-8") as handle:
        for line in handle:
            match = re.match(r"\| (1\d\d\d) \| ([A-Z0-9]+) \| (.+?) \|\s*$", line)
            if match:
                rows[int(match.group(1))] = (match.group(2), match.group(3))
    return rows


def test_table_matches_spec_exactly():
    table = spec_table()
    assert len(table) == 147
    assert errors.ERRORS == table


@pytest.mark.parametrize("code,shell", [(0, 0), (1008, 65), (1199, 66), (1103, 67), (1177, 68), (1163, 68),
                                        (1373, 68), (1098, 69), (1301, 70), (1116, 71), (1117, 72), (1186, 73),
                                        (1330, 74), (1332, 75), (1342, 76), (1331, 77), (1359, 78), (1318, 79),
                                        (1382, 80), (1213, 81), (1385, 82), (1386, 83), (1200, 137), (1377, 64),
                                        (-1, 64), (1305, 1), (1144, 1)])
def test_shell_exit_codes(code, shell):
    assert errors.shell_exit_code(code) == shell


def test_signal_codes_and_exit_codes():
    expected = {signal.SIGTERM: (1201, 143), signal.SIGQUIT: (1202, 131), signal.SIGSEGV: (1203, 139),
                signal.SIGXCPU: (1204, 152), signal.SIGBUS: (1206, 135), signal.SIGUSR1: (1207, 138),
                signal.SIGINT: (1208, 130)}
    for signum, (code, shell) in expected.items():
        assert errors.signal_code(signum) == code
        assert errors.shell_exit_code(code) == shell
        assert errors.shell_exit_code(0, signum) == shell == 128 + signum
    assert errors.signal_code(signal.SIGHUP) == 1200


def test_pilot_error_and_diag():
    err = errors.PilotError(1099, "x" * 1000)
    assert err.code == 1099 and len(err.diag) == 256 and err.diag.endswith("...")
    assert "STAGEINFAILED" in str(err)
    assert errors.PilotError(1305).diag == "Failed to execute payload"
    assert errors.format_diag(1008, "a\n  b\tc") == "a b c"
    with pytest.raises(ValueError):
        errors.PilotError(4242)
    assert errors.CODES["PAYLOADEXECUTIONFAILURE"] == 1305
    assert errors.message(9999) == "Unknown error code 9999"
