"""The error table, the signal codes and the pilot's exit codes are PanDA's contract: they must match the spec."""

import os
import re
import signal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pilot import errors
from pilot.errors import PilotError, format_diag, shell_exit_code, signal_code
from tests.conftest import REPO

SPEC = os.path.join(REPO, "tests", "data", "spec", "pilot3-reference.md")  # a copy of the design study


def _spec_lines():
    with open(SPEC, encoding="utf-8") as handle:
        return handle.read().splitlines()


def _section(lines, heading):
    """The lines of the spec section starting with `heading`, up to the next heading or rule."""
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    body = []
    for line in lines[start + 1:]:
        if line.startswith("#") or line.startswith("-----"):
            break
        body.append(line)
    return body


def _table_rows(lines):
    """Cells of each markdown table row, header and separator rows excluded."""
    rows = []
    for line in lines:
        if not line.startswith("|"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if set("".join(cells)) <= set("-: ") or cells[0] in ("code", "shell"):
            continue
        rows.append(cells)
    return rows


def spec_error_table():
    """{code: (NAME, message)} from the §10 table."""
    rows = _table_rows(_section(_spec_lines(), "## 10. Error codes"))
    table = {}
    for code, name, text in rows:
        assert int(code) not in table, f"code {code} twice in the spec"
        table[int(code)] = (name, text)
    return table


def spec_exit_codes():
    """[(pilot code, shell exit code)] for every explicit row of the §2.3 table (the 'any other' row aside)."""
    pairs = []
    for shell_cell, code_cell, _meaning in _table_rows(_section(_spec_lines(), "### 2.3 Exit codes")):
        if code_cell == "any other":
            continue
        shells = [int(x) for x in re.split(r"[,/]", shell_cell)]
        codes = [int(x) for x in re.split(r"[,/]", code_cell)]
        if len(shells) == 1:
            shells = shells * len(codes)
        assert len(shells) == len(codes), f"cannot pair §2.3 row {shell_cell} | {code_cell}"
        pairs.extend(zip(codes, shells))
    return pairs


# --- the table ---------------------------------------------------------------------------------------------

def test_spec_table_is_parsed_completely():
    table = spec_error_table()
    assert len(table) == 147
    assert table[1008] == ("GENERALERROR", "General pilot error, consult batch log")
    assert table[1386] == ("PANDAQUEUENOTONLINE", "PanDA queue is not online")


def test_table_has_all_147_codes_and_matches_the_spec_exactly():
    table = spec_error_table()
    assert len(errors.ERRORS) == 147
    missing = sorted(set(table) - set(errors.ERRORS))
    extra = sorted(set(errors.ERRORS) - set(table))
    assert not missing and not extra, (missing, extra)
    different = {code: (errors.ERRORS[code], table[code]) for code in table if errors.ERRORS[code] != table[code]}
    assert not different
    assert errors.ERRORS == table


def test_names_are_unique_and_codes_invert_the_table():
    names = [name for name, _ in errors.ERRORS.values()]
    assert len(set(names)) == len(names) == 147
    assert len(errors.CODES) == 147
    for code, (name, text) in errors.ERRORS.items():
        assert errors.CODES[name] == code
        assert errors.name(code) == name and errors.message(code) == text
        assert re.fullmatch(r"[A-Z0-9]+", name) and text and len(text) <= 256


def test_name_and_message_of_negative_and_unknown_codes():
    # negative codes are "recoverable" codes sent negated: same entry
    assert errors.message(-1137) == "Failed to stage-out file" and errors.name(-1137) == "STAGEOUTFAILED"
    assert errors.message(9999) == "Unknown error code 9999" and errors.name(9999) == "UNKNOWN"
    assert errors.message(0) == "Unknown error code 0"


def test_recoverable_codes_are_pilot3s():
    # spec §10: 0, 1135, 1136, 1137, 1141, 1152, 1181 (0 is "no error")
    assert errors.RECOVERABLE_CODES == {1135, 1136, 1137, 1141, 1152, 1181}


# --- signals -----------------------------------------------------------------------------------------------

SIGNALS = {signal.SIGTERM: 1201, signal.SIGQUIT: 1202, signal.SIGSEGV: 1203, signal.SIGXCPU: 1204,
           signal.SIGBUS: 1206, signal.SIGUSR1: 1207, signal.SIGINT: 1208}


@pytest.mark.parametrize("signum,code", sorted(SIGNALS.items()))
def test_signal_to_code(signum, code):
    assert signal_code(signum) == code
    # the code's NAME is the signal's name, and its message names the signal
    assert errors.name(code) == signal.Signals(signum).name
    assert errors.message(code) == f"Job killed by signal: {signal.Signals(signum).name}"


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGKILL, signal.SIGALRM, signal.SIGUSR2,
                                    signal.SIGPIPE, signal.SIGABRT, 0, 64, 999])
def test_other_signals_are_killsignal(signum):
    assert signal_code(signum) == 1200 and errors.name(1200) == "KILLSIGNAL"


def test_signal_table_is_exactly_the_seven_pilot3_signals():
    assert errors.SIGNAL_CODES == SIGNALS


# --- shell exit codes --------------------------------------------------------------------------------------

def test_spec_exit_code_table_is_parsed_completely():
    pairs = dict(spec_exit_codes())
    assert len(pairs) == 32  # 0, -1 and 30 pilot codes
    assert pairs[1116] == 71 and pairs[1117] == 72 and pairs[1206] == 135 and pairs[-1] == 64


@pytest.mark.parametrize("code,shell", spec_exit_codes())
def test_shell_exit_code_for_every_row_of_section_2_3(code, shell):
    assert shell_exit_code(code) == shell


@pytest.mark.parametrize("code", [1099, 1137, 1144, 1150, 1305, 1312, 1371, 4242, -5])
def test_any_other_code_exits_1(code):
    assert shell_exit_code(code) == 1


@pytest.mark.parametrize("signum", sorted(int(s) for s in signal.valid_signals() if 0 < int(s) < 65))
def test_a_received_signal_exits_128_plus_signum(signum):
    assert shell_exit_code(0, signum) == 128 + signum
    # the signal wins over the error code (Pilot 3: the signal's code replaces it)
    assert shell_exit_code(1008, signum) == 128 + signum
    assert shell_exit_code(signal_code(signum)) == (128 + signum if signum in SIGNALS else 137)


def test_signal_rows_are_the_shells_own_convention():
    for signum, code in SIGNALS.items():
        assert shell_exit_code(code) == 128 + signum
    assert shell_exit_code(1200) == 128 + signal.SIGKILL


def test_no_signal_and_no_error_is_success():
    assert shell_exit_code(0) == 0 and shell_exit_code(0, None) == 0 and shell_exit_code(0, 0) == 0


# --- PilotError and diagnostics ----------------------------------------------------------------------------

def test_pilot_error_carries_code_and_diag():
    with pytest.raises(PilotError) as caught:
        raise PilotError(1331, "input file x.root is not in /data")
    err = caught.value
    assert isinstance(err, Exception)
    assert err.code == 1331 and err.diag == "input file x.root is not in /data"
    assert str(err) == "1331 MISSINGINPUTFILE: input file x.root is not in /data"


def test_pilot_error_without_detail_uses_the_standard_message():
    assert PilotError(1305).diag == "Failed to execute payload"
    assert PilotError(1008, "").diag == "General pilot error, consult batch log"


@pytest.mark.parametrize("code", [0, 4242, -1008, 1135])
def test_pilot_error_refuses_codes_outside_the_table(code):
    with pytest.raises(ValueError, match=str(code)):
        PilotError(code, "x")


def test_pilot_error_diag_is_short_and_one_line():
    err = PilotError(1099, "line one\nline two\t\ttabbed   " + "x" * 1000)
    assert len(err.diag) == 256 and err.diag.endswith("...") and "\n" not in err.diag and "\t" not in err.diag
    assert err.diag.startswith("line one line two tabbed x")


@pytest.mark.parametrize("length,expected", [(0, None), (1, 1), (255, 255), (256, 256), (257, 256), (10000, 256)])
def test_format_diag_length_limit(length, expected):
    text = "d" * length
    diag = format_diag(1008, text)
    if expected is None:
        assert diag == errors.message(1008)
    else:
        assert len(diag) == expected
        assert diag == text if length <= 256 else diag == "d" * 253 + "..."


def test_format_diag_collapses_whitespace_and_accepts_non_strings():
    assert format_diag(1008, "  a\n  b\r\n\tc  ") == "a b c"
    assert format_diag(1008, 12345) == "12345"
    assert format_diag(9999) == "Unknown error code 9999"
    # a blank detail is no detail: the diagnostic is never empty
    assert format_diag(1098, " \r\n\t ") == format_diag(1098, None) == "Not enough local space"


@settings(max_examples=300, derandomize=True, deadline=None, database=None)
@given(st.sampled_from(sorted(errors.ERRORS)), st.text(max_size=600))
def test_format_diag_is_always_one_line_of_at_most_256(code, detail):
    diag = format_diag(code, detail)
    assert len(diag) <= errors.MAX_DIAG_LENGTH == 256
    assert "\n" not in diag and diag == diag.strip()
    assert diag  # never empty: the standard message when the detail is blank
    assert PilotError(code, detail).diag == diag


def test_error_codes_by_pilot3_name_are_the_numbers():
    import json

    from pilot.errors import CODES, ERRORS, ErrorCode, PilotError

    assert len(ErrorCode) == len(ERRORS) and all(ErrorCode[name] == code for name, code in CODES.items())
    code = PilotError(1319, "x").code
    assert code is ErrorCode.INTERNALPILOTPROBLEM and code == 1319
    assert str(code) == f"{code}" == "1319" and json.dumps({"c": code}) == '{"c": 1319}'


def test_the_error_code_enum_is_built_once_on_first_use_not_at_import():
    """Building the 147-member IntEnum costs ~4 ms: a pilot start must not pay it before its payload runs."""
    import subprocess
    import sys

    code = ("import pilot.main, pilot.pipeline, pilot.errors as e; assert not e._enum, 'built at import';"
            "from pilot.errors import ErrorCode; assert e.ErrorCode is ErrorCode is e._error_code_enum();"
            "assert e.PilotError(1008).code is ErrorCode.GENERALERROR; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.stdout.strip() == "ok", out.stderr[-2000:]
    with pytest.raises(AttributeError, match="no attribute 'NoSuchThing'"):
        errors.NoSuchThing  # noqa: B018 -- the module __getattr__ refuses other names
