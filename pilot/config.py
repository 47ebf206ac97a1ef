"""Typed configuration: default.cfg, then --config FILE, then PILOT_CFG_<SECTION>_<KEY> environment variables.

Each section is a frozen dataclass (pilot/config_sections.py) declaring every setting's type and range, so a
typo or an absurd value in an override (a period of 0, a negative grace) is an error at start-up rather than a
string compared with a number, or a busy loop, an hour later. Unknown sections or keys in an override file or
variable are errors too: silent fallbacks hide misconfiguration.
(The CFG infix keeps these apart from Pilot 3's PILOT_* run-time variables such as PILOT_PAYLOAD_PROXY_VERIFICATION.)
"""

from __future__ import annotations

import configparser
import math
import os
from dataclasses import fields
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

from .config_sections import ORDERED, SECTIONS, Config
from .errors import PilotError

ENV_PREFIX = "PILOT_CFG_"
_TRUE = {"true", "yes", "y", "t", "1", "on"}
_FALSE = {"false", "no", "n", "f", "0", "off"}
# a section field's annotation (a string: config_sections uses postponed annotations) -> its type; reading it
# here rather than through typing.get_type_hints saves its evaluation of every annotation at each start
_KINDS: Dict[str, type] = {"int": int, "float": float, "str": str, "bool": bool}


def default_cfg_path() -> Path:
    """pilot/default.cfg: shipped inside the package (the top-level default.cfg is a link to it)."""
    path = Path(__file__).resolve().parent / "default.cfg"
    if not path.is_file():
        raise PilotError(1008, f"{path} is missing: the pilot installation is incomplete")
    return path


def _number(kind: type, text: str) -> Any:
    value = kind(text)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(text)
    return value


def _convert(kind: type, raw: str, where: str) -> Any:
    """The text of a setting as its declared type (bool, int, float or str)."""
    text = raw.strip()
    try:
        if kind is bool:
            low = text.lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ValueError(text)
        if kind in (int, float):
            return _number(kind, text)
    except ValueError:
        raise PilotError(1008, f"bad value {text[:60]!r} for {where}: expected {kind.__name__}") from None
    return text


def _check(meta: Mapping[str, Any], value: Any, where: str) -> None:
    """Refuse a value outside the setting's declared range, choices or kind."""
    if "range" in meta:
        low, high = meta["range"]
        if (low is not None and value < low) or (high is not None and value > high):
            raise PilotError(1008, f"{value!r} is out of range for {where}: allowed {describe(meta)}")
    elif "choices" in meta and value not in meta["choices"]:
        raise PilotError(1008, f"{value[:60]!r} is not allowed for {where}: allowed {describe(meta)}")
    elif isinstance(value, str):
        kind = meta.get("kind")
        if any(ch in value for ch in "\0\n\r"):
            raise PilotError(1008, f"{where} contains a NUL or a line break")
        if not value and kind in ("name", "url") and not meta.get("optional"):
            raise PilotError(1008, f"{where} must not be empty")
        if value and kind == "name" and (value.startswith("/") or ".." in value.split("/")):
            raise PilotError(1008, f"{value[:60]!r} is not allowed for {where}: a file name inside the work dir")
        if value and kind == "url" and not value.startswith(("http://", "https://")):
            raise PilotError(1008, f"{value[:60]!r} is not allowed for {where}: an http:// or https:// URL")


def describe(meta: Mapping[str, Any]) -> str:
    """The declared range of a setting, for messages and docs/configuration.md."""
    if "range" in meta:
        low, high = (_plain(bound) for bound in meta["range"])
        return f"{low} to {high}"
    if "choices" in meta:
        return ", ".join(word if word else "(empty)" for word in meta["choices"])
    kind = meta.get("kind")
    optional = " or empty" if meta.get("optional") else ""
    if kind == "name":
        return "file name in the work dir" + optional
    if kind == "url":
        return "http(s) URL" + optional
    if kind == "text":
        return "text (one line)"
    return "true or false"


def _plain(number: Any) -> str:
    return "any" if number is None else str(int(number)) if float(number).is_integer() else str(number)


def declared(section_class: type) -> Dict[str, Tuple[type, Mapping[str, Any]]]:
    """key -> (type, metadata) of a section dataclass."""
    out: Dict[str, Tuple[type, Mapping[str, Any]]] = {}
    for item in fields(section_class):
        kind = _KINDS.get(item.type) if isinstance(item.type, str) else item.type
        if kind not in _KINDS.values():
            raise TypeError(f"{section_class.__name__}.{item.name}: type {item.type!r} is not int, float, str or bool")
        out[item.name] = (kind, item.metadata)
    return out


def _read_ini(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keep key case
    try:
        with open(path, encoding="utf-8") as handle:
            parser.read_file(handle)
    except (OSError, UnicodeDecodeError, configparser.Error) as exc:
        raise PilotError(1008, f"cannot read config file {path}: {exc}") from None
    return parser


def load_config(path: Optional[str] = None, env: Optional[Mapping[str, str]] = None) -> Config:
    """Defaults, overridden by the file at `path` (if any), then by PILOT_CFG_<SECTION>_<KEY> variables; every
    value typed and range-checked (PilotError 1008 with one clear line otherwise)."""
    env = os.environ if env is None else env
    base = _read_ini(default_cfg_path())
    schema = {section: declared(cls) for section, cls in SECTIONS.items()}
    unknown = set(base.sections()) - set(schema)
    if unknown:
        raise PilotError(1008, f"default.cfg section(s) {sorted(unknown)} not declared in pilot/config_sections.py")
    values: Dict[str, Dict[str, Any]] = {}
    for section, keys in schema.items():
        if not base.has_section(section):
            raise PilotError(1008, f"default.cfg has no section [{section}]: the pilot installation is broken")
        missing = set(keys) - set(base.options(section))
        extra = set(base.options(section)) - set(keys)
        if missing or extra:
            raise PilotError(1008, f"default.cfg [{section}] and pilot/config_sections.py disagree: "
                                   f"undeclared {sorted(extra)}, missing {sorted(missing)}")
        values[section] = {key: _convert(keys[key][0], base.get(section, key), f"[{section}] {key} (default.cfg)")
                           for key in keys}
    lookup = {section.lower(): section for section in values}

    def override(section: str, key: str, raw: str, origin: str) -> None:
        real = lookup.get(section.lower())
        if real is None:
            raise PilotError(1008, f"{origin}: unknown config section [{section}]")
        keys = {k.lower(): k for k in values[real]}
        real_key = keys.get(key.lower())
        if real_key is None:
            raise PilotError(1008, f"{origin}: unknown config key [{real}] {key}")
        value = _convert(schema[real][real_key][0], raw, f"[{real}] {real_key} ({origin})")
        values[real][real_key] = os.path.expandvars(value) if isinstance(value, str) else value

    if path:
        extra_file = _read_ini(Path(path))
        for section in extra_file.sections():
            for key, raw in extra_file.items(section):
                override(section, key, raw, str(path))
    for var, raw in env.items():
        if not var.startswith(ENV_PREFIX):
            continue
        section, _, key = var[len(ENV_PREFIX):].partition("_")
        override(section, key, raw, f"environment {var}")
    for section, keys in schema.items():
        for key, (_kind, meta) in keys.items():
            _check(meta, values[section][key], f"[{section}] {key}")
    for section, low, high in ORDERED:
        if values[section][low] > values[section][high]:
            raise PilotError(1008, f"[{section}] {low} ({values[section][low]}) must not exceed {high} "
                                   f"({values[section][high]})")
    return Config(**{section.lower(): SECTIONS[section](**vals) for section, vals in values.items()})
