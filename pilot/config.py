"""Typed configuration: default.cfg, then --config FILE, then PILOT_CFG_<SECTION>_<KEY> environment variables.

Each value takes the type of its default (bool, int, float, or str; an empty default is an optional str), so a
typo in an override is an error at start-up rather than a string compared with a number an hour later.
Unknown sections or keys in an override file or variable are errors too: silent fallbacks hide misconfiguration.
(The CFG infix keeps these apart from Pilot 3's PILOT_* run-time variables such as PILOT_PAYLOAD_PROXY_VERIFICATION.)
"""

from __future__ import annotations

import configparser
import os
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

from .errors import PilotError

ENV_PREFIX = "PILOT_CFG_"
_TRUE = {"true", "yes", "y", "t", "1", "on"}
_FALSE = {"false", "no", "n", "f", "0", "off"}


def default_cfg_path() -> Path:
    """pilot/default.cfg: shipped inside the package (the top-level default.cfg is a link to it)."""
    path = Path(__file__).resolve().parent / "default.cfg"
    if not path.is_file():
        raise PilotError(1008, f"{path} is missing: the pilot installation is incomplete")
    return path


def _infer(raw: str) -> Any:
    text = raw.strip()
    if text in ("True", "False"):
        return text == "True"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _cast_like(default: Any, raw: str, where: str) -> Any:
    text = raw.strip()
    try:
        if isinstance(default, bool):
            low = text.lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ValueError(text)
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
    except ValueError:
        raise PilotError(1008, f"bad value {text!r} for {where}: expected {type(default).__name__}") from None
    return os.path.expandvars(text)


class Section:
    """Read-only attribute access to one section's typed values."""

    def __init__(self, name: str, values: Dict[str, Any]):
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_values", values)

    def __getattr__(self, key: str) -> Any:
        try:
            return self._values[key]
        except KeyError:
            raise AttributeError(f"no setting [{self._name}] {key}") from None

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("configuration is read-only")

    def items(self):
        return self._values.items()


class Config:
    """All settings, grouped by section: `config.pilot.heartbeat`, `config.file.checksum_type`."""

    def __init__(self, sections: Dict[str, Dict[str, Any]]):
        self._sections = {name.lower(): Section(name, values) for name, values in sections.items()}

    def __getattr__(self, name: str) -> Section:
        try:
            return self._sections[name]
        except KeyError:
            raise AttributeError(f"no config section {name}") from None

    def as_dict(self) -> Dict[str, Dict[str, Any]]:
        return {name: dict(sec.items()) for name, sec in self._sections.items()}


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
    """Defaults, overridden by the file at `path` (if any), then by PILOT_CFG_<SECTION>_<KEY> variables."""
    env = os.environ if env is None else env
    base = _read_ini(default_cfg_path())
    values: Dict[str, Dict[str, Any]] = {
        section: {key: _infer(raw) for key, raw in base.items(section)} for section in base.sections()
    }
    lookup = {section.lower(): section for section in values}

    def override(section: str, key: str, raw: str, origin: str) -> None:
        real = lookup.get(section.lower())
        if real is None:
            raise PilotError(1008, f"{origin}: unknown config section [{section}]")
        keys = {k.lower(): k for k in values[real]}
        real_key = keys.get(key.lower())
        if real_key is None:
            raise PilotError(1008, f"{origin}: unknown config key [{real}] {key}")
        values[real][real_key] = _cast_like(values[real][real_key], raw, f"[{real}] {real_key} ({origin})")

    if path:
        extra = _read_ini(Path(path))
        for section in extra.sections():
            for key, raw in extra.items(section):
                override(section, key, raw, str(path))
    for var, raw in env.items():
        if not var.startswith(ENV_PREFIX):
            continue
        section, _, key = var[len(ENV_PREFIX):].partition("_")
        override(section, key, raw, f"environment {var}")
    return Config(values)
