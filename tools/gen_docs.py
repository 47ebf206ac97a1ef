#!/usr/bin/env python3
"""Generate docs/configuration.md (from pilot/default.cfg), docs/error-codes.md (from pilot/errors.py) and
docs/command-line.md (from the parser in pilot/options.py).

`--check` exits 1 when a checked-in reference differs from what would be generated (CI runs it through
tests/unit/test_docs.py), so the references cannot go stale.
"""

import argparse
import os
import re
import sys

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, TOP)

from pilot import errors  # noqa: E402
from pilot.config import declared, describe  # noqa: E402
from pilot.config_sections import SECTIONS  # noqa: E402

CODE_IN_SOURCE = re.compile(r"(?<![\w.])(1[0-3]\d\d)(?![\w.])")
CODE_BY_NAME = re.compile(r"\bErrorCode\.([A-Z0-9_]+)\b")


def configuration_md() -> str:
    lines = ["# Configuration reference", "",
             "Generated from `pilot/default.cfg` by `tools/gen_docs.py`; do not edit by hand.", "",
             "Override a value with `--config FILE` (same INI format, only the keys you change) or with the",
             "environment variable `PILOT_CFG_<SECTION>_<KEY>` (e.g. `PILOT_CFG_PILOT_HEARTBEAT=60`). A value must",
             "have the type of its default and lie in its *range* (declared in `pilot/config_sections.py`); a value",
             "outside it, an unknown section or key stops the pilot at start-up with 1008 (exit 65) and one line",
             "naming the setting.", ""]
    section, comments = None, []
    with open(os.path.join(TOP, "pilot", "default.cfg"), encoding="utf-8") as handle:
        for raw in handle:
            line = raw.rstrip("\n")
            if line.startswith("#") and section is None:
                continue
            if line.startswith("["):
                section = line.strip("[]")
                lines += ["", f"## [{section}]", "", "| key | default | range | meaning |", "| --- | --- | --- | --- |"]
                schema = declared(SECTIONS[section])
                comments = []
            elif line.startswith("#"):
                comments.append(line.lstrip("# ").strip())
            elif "=" in line and section:
                key, _, value = (part.strip() for part in line.partition("="))
                meaning = " ".join(comments).replace("|", "\\|") or "Pilot 3 setting of the same name"
                allowed = describe(schema[key][1]).replace("|", "\\|")
                shown = f"`{value}`" if value else "(empty)"
                lines.append(f"| `{key}` | {shown} | {allowed} | {meaning} |")
                comments = []
    return "\n".join(lines).replace("\n\n\n", "\n\n") + "\n"


def where_raised() -> dict:
    found = {}
    root = os.path.join(TOP, "pilot")
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            path = os.path.join(folder, name)
            if not name.endswith(".py") or path.endswith(os.path.join("pilot", "errors.py")):
                continue
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
            module = os.path.relpath(path, TOP)[:-3].replace(os.sep, ".")
            for match in CODE_IN_SOURCE.finditer(text):
                code = int(match.group(1))
                if code in errors.ERRORS:
                    found.setdefault(code, set()).add(module)
            for match in CODE_BY_NAME.finditer(text):
                if match.group(1) in errors.CODES:
                    found.setdefault(errors.CODES[match.group(1)], set()).add(module)
    return found


def error_codes_md() -> str:
    raised = where_raised()
    lines = ["# Error codes", "",
             "Generated from `pilot/errors.py` by `tools/gen_docs.py`; do not edit by hand. The numbers and",
             "messages are PanDA's (shared with the server and the monitor). *Raised in* lists the modules of",
             "this pilot that use the code; *exit* is the pilot's shell exit code when the code ends the pilot",
             "itself (a failed job that was reported does not: the pilot then exits 0, unless the job failed of",
             "an internal pilot error, 1319, which makes the pilot exit 1).", "",
             "| code | name | message | exit | raised in |", "| --- | --- | --- | --- | --- |"]
    for code, (name, message) in sorted(errors.ERRORS.items()):
        modules = ", ".join(f"`{m}`" for m in sorted(raised.get(code, ()))) or "-"
        lines.append(f"| {code} | {name} | {message} | {errors.shell_exit_code(code)} | {modules} |")
    lines += ["", "Signals: the pilot exits with 128 + the signal number (SIGTERM 143, SIGINT 130, SIGUSR1 138, "
                  "SIGXCPU 152, SIGQUIT 131, SIGHUP 129)."]
    return "\n".join(lines) + "\n"


def command_line_md() -> str:
    from pilot.options import help_markdown

    return help_markdown()


def migration_md() -> str:
    """docs/migration-from-pilot3.md with its flags table regenerated (the rest of the page is written by hand)."""
    from pilot.options import FLAGS_BEGIN, FLAGS_END, migration_flags_table

    with open(os.path.join(TOP, "docs", "migration-from-pilot3.md"), encoding="utf-8") as handle:
        text = handle.read()
    head, _, rest = text.partition(FLAGS_BEGIN)
    _, _, tail = rest.partition(FLAGS_END)
    return head + migration_flags_table() + tail


DOCS = {"configuration.md": configuration_md, "error-codes.md": error_codes_md, "command-line.md": command_line_md,
        "migration-from-pilot3.md": migration_md}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a checked-in reference is stale")
    args = parser.parse_args()
    stale = []
    for name, make in DOCS.items():
        path = os.path.join(TOP, "docs", name)
        text = make()
        current = open(path, encoding="utf-8").read() if os.path.exists(path) else ""
        if args.check:
            if current != text:
                stale.append(name)
        elif current != text:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(text)
            print(f"wrote {path}")
    if stale:
        print(f"stale: {', '.join(stale)}; run tools/gen_docs.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
