"""The command line: typed settings match the parser, every option has help, none is silently ignored."""

import argparse
import dataclasses
import os
import re

import pytest

from pilot import options
from pilot.options import build_parser, legacy_selector_refusal, notes, parser_defaults, refusal
from pilot.settings import Settings

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse(*argv):
    return Settings.from_namespace(build_parser().parse_args(["-q", "Q", *argv]))


def test_settings_fields_are_the_parser_dests_with_matching_defaults():
    defaults = parser_defaults()
    fields = {field.name: field for field in dataclasses.fields(Settings)}
    assert set(fields) == set(defaults)
    for name, field in fields.items():
        if name != "queue":
            assert field.default == defaults[name], name


def test_settings_are_read_only_and_typed():
    settings = parse("-v", "7", "--cleanup", "false")
    assert settings.getjob_requests == 7 and settings.cleanup is False
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.queue = "other"


def test_a_namespace_that_disagrees_with_settings_is_a_bug():
    with pytest.raises(TypeError, match="unknown"):
        Settings.from_namespace(argparse.Namespace(queue="Q", no_such_option=1))


def test_every_option_has_help():
    missing = [action.option_strings for action in build_parser()._actions if not action.help]
    assert missing == []


def test_both_spellings_accepted():
    assert parse("--pilot_user", "generic", "--allow-same-user=False").allow_same_user is False


def _source_text():
    texts = []
    for folder, dirs, files in os.walk(os.path.join(REPO, "pilot")):
        for name in files:
            if name.endswith(".py") and name not in ("options.py", "settings.py"):
                with open(os.path.join(folder, name), encoding="utf-8") as handle:
                    texts.append(handle.read())
    return "\n".join(texts)


def test_no_option_is_silently_ignored():
    """Every dest is read by the pilot, or its use is refused, or logged as needing nothing (options.NOTED)."""
    source = _source_text()
    handled = set(options.NOTED) | set(options.REFUSED_UNLESS_DEFAULT) | set(options.LEGACY_SELECTORS)
    handled |= {"workflow", "hpc_mode", "executor_type", "check", "config", "queue"}  # read by main/options
    unread = [dest for dest in parser_defaults() if dest not in handled and
              not re.search(rf"\.{dest}\b", source)]
    assert unread == []


def test_no_module_reads_the_raw_command_line():
    assert not re.search(r"ctx\.args\b|\bargs\.(queue|url|workdir)\b", _source_text())


@pytest.mark.parametrize("argv, message", [
    (["-w", "production"], "workflow 'production' is not implemented"),
    (["--use-realtime-logging"], "real-time logging is not implemented"),
    (["--realtime-logging-server", "logstash:h:1"], "real-time logging"),
    (["-L", "10"], "stager workflow"),
    (["--input-destination-dir", "/x"], "stager workflow"),
    (["--use-https", "false"], "TLS cannot be switched off"),
    (["--subscribe-to-msgsvc"], "message-service"),
    (["--hpc-mode", "jumbojobs"], "--hpc-mode 'jumbojobs' is not implemented"),
    (["--es-executor-type", "raythena"], "--es-executor-type 'raythena'"),
    (["--stageout-attempts", "0"], "at least 1"),
    (["--pilot-user", "ATLAS"], "no such experiment plug-in"),
])
def test_refused_with_a_clear_message(argv, message):
    assert message in refusal(parse(*argv))


def test_defaults_and_known_values_are_not_refused():
    assert refusal(parse()) is None
    assert refusal(parse("--pilot-user", "Generic", "--use-https", "true", "-L", "3600", "-r", "X", "-s", "Y")) is None


def test_legacy_selectors_only_with_the_legacy_api():
    settings = parse("--country-group", "de", "--allow-other-country")
    assert "--country-group, --allow-other-country" in legacy_selector_refusal(settings, "auto")
    assert legacy_selector_refusal(settings, "legacy") is None
    assert legacy_selector_refusal(parse(), "v1") is None


def test_obsolete_flags_are_logged_not_silent():
    assert notes(parse()) == []
    lines = notes(parse("-r", "X", "-s", "Y", "-u"))
    assert len(lines) == 3 and all("ignored" in line or "no payload proxy" in line for line in lines)


@pytest.mark.parametrize("what, calls", [("stage-out", 3), ("stage-in", 1)])
def test_stageout_attempts_retry_transient_stage_out_failures(what, calls):
    import types

    from pilot.config import load_config
    from pilot.transfer.base import Copytool, TransferFailure
    from pilot.trigger import Trigger

    ctx = types.SimpleNamespace(config=load_config(env={"PILOT_CFG_FILE_TRANSFER_ATTEMPTS": "1"}),
                                settings=parse("--stageout-attempts", "3"), abort=Trigger("abort"))
    seen = []

    def flaky():
        seen.append(1)
        if len(seen) < 3:
            raise TransferFailure(1137, "transient")
        return "stored"

    if calls == 3:
        assert Copytool._retrying(flaky, types.SimpleNamespace(lfn="f"), ctx, what) == "stored"
    else:
        with pytest.raises(TransferFailure):
            Copytool._retrying(flaky, types.SimpleNamespace(lfn="f"), ctx, what)
    assert len(seen) == calls


def _pilot3_options():
    """Option strings of Pilot 3's argument parser, from the design study's §2.1 table (tests/data/spec)."""
    path = os.path.join(REPO, "tests", "data", "spec", "pilot3-reference.md")
    text = open(path, encoding="utf-8").read()
    table = text.split("### 2.1 Options", 1)[1].split("###", 1)[0]
    names = set()
    for line in table.splitlines():
        if line.startswith("| `"):
            first = line.split("|")[1]
            names |= set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9_-]*|-[a-zA-Z])\b", first))
    return names


def _migration_doc():
    return open(os.path.join(REPO, "docs", "migration-from-pilot3.md"), encoding="utf-8").read()


def test_migration_flags_table_covers_every_pilot3_option():
    pilot3 = _pilot3_options()
    assert len(pilot3) > 60  # the whole parser, not a fragment
    table = _migration_doc().split(options.FLAGS_BEGIN)[1].split(options.FLAGS_END)[0]
    rows = set(re.findall(r"`(--?[\w-]+)`", table))
    ours = {name for action in build_parser()._actions for name in action.option_strings}
    assert pilot3 - rows == set()
    assert pilot3 - ours == set()
    assert rows - ours == set()


def test_migration_files_table_covers_every_pilot3_file_name():
    """Every file name of a Pilot 3 key in default.cfg (keys not marked "ours") has a row in the Files table."""
    files_table = _migration_doc().split("## Files", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([^`]+)`(?:, `([^`]+)`)?", files_table, flags=re.M))
    documented = {name for pair in documented for name in pair if name}
    comments, wanted = [], set()
    for line in open(os.path.join(REPO, "pilot", "default.cfg"), encoding="utf-8"):
        line = line.strip()
        if line.startswith("#"):
            comments.append(line)
            continue
        key, sep, value = line.partition("=")
        if sep and not any("ours" in comment for comment in comments) and re.fullmatch(
                r"[\w.-]+\.(json|txt|out|log|xml|stdout|stderr)|kill_worker|pilot_kill_payload", value.strip()):
            wanted.add(value.strip())
        comments = []
    assert len(wanted) > 15
    assert wanted - documented == set()
