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
