"""Typed settings: one frozen dataclass per service, from a YAML file and the environment.

A service's settings class is a dataclass whose fields are *sections* (dataclasses of scalars).
Values come, in increasing priority, from the field defaults, the YAML file (``--config`` or
``BOOTYARD_CONFIG``) and environment variables ``BOOTYARD_<SECTION>__<KEY>``; ``BOOTYARD_REDIS_URL``
is a short form of ``BOOTYARD_REDIS__URL`` that every service and the CLI honour.

One file can hold every service's sections: a service ignores the sections that belong to the
others (``KNOWN_SECTIONS``), and refuses any other unknown section or key, a value of the wrong type,
or one its validator rejects, with a :class:`SettingsError` that names the key, where the value
came from and why it is wrong. Only ``__main__`` modules pass in ``os.environ``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from shared import native

ENV_PREFIX = "BOOTYARD_"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
# Sections any bootyard service may find in a shared config file.
KNOWN_SECTIONS = frozenset(
    {"redis", "log", "dhcp", "tftp", "http", "blockexport", "mirrorsync", "cli", "bootstate",
     "power", "discovery"}
)
# Environment variables with the prefix that are not settings.
# (and shared.native.SWITCHES, read before any settings exist)
_NOT_SETTINGS = frozenset({"BOOTYARD_CONFIG", "BOOTYARD_REDIS_URL", "BOOTYARD_SKIP_SLOW"})


class SettingsError(Exception):
    """A setting that stops start-up; the message is meant for the operator as it is."""


def setting(default: Any, *, help: str = "", choices: tuple | None = None,
            check: Callable[[Any], None] | None = None, secret: bool = False,
            formerly: str | None = None) -> Any:
    """Declare a setting with its documentation and validation (``check`` raises ValueError).
    A ``secret`` setting is never printed (``--check-config`` shows whether it is set). A setting
    that was renamed names its old key in ``formerly``: the old key still sets it, with a note
    (see :func:`load_settings`) telling the operator the new name."""
    meta = {"help": help, "choices": choices, "check": check, "secret": secret,
            "formerly": formerly}
    if isinstance(default, (list, dict, set)):
        raise TypeError("use a tuple for list defaults")
    return dataclasses.field(default=default, metadata=meta)


def port_number(value: int) -> None:
    if not 0 <= value <= 65535:
        raise ValueError("a port must be between 0 and 65535")


def positive(value: float) -> None:
    if value <= 0:
        raise ValueError("must be greater than zero")


def non_negative(value: float) -> None:
    if value < 0:
        raise ValueError("must be zero or more")


def http_url(value: str | None) -> None:
    """An http(s) URL, or empty/unset."""
    if value and not value.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL, or empty")


@dataclasses.dataclass(frozen=True)
class RedisSection:
    url: str = setting(DEFAULT_REDIS_URL, help="Redis URL shared by every service and the CLI")
    timeout: float = setting(2.0, help="seconds before a Redis command counts as failed",
                             check=positive)


@dataclasses.dataclass(frozen=True)
class LogSection:
    format: str = setting("kv", help="log line format", choices=("kv", "json"))
    level: str = setting("info", help="lowest level logged",
                         choices=("debug", "info", "warning", "error"))


@dataclasses.dataclass(frozen=True)
class CommonSettings:
    """The sections every service has; a service's class adds its own section."""

    redis: RedisSection = dataclasses.field(default_factory=RedisSection)
    log: LogSection = dataclasses.field(default_factory=LogSection)


def load_settings(cls: type, config_path: str | Path | None = None,
                  environ: Mapping[str, str] | None = None, notes: list[str] | None = None):
    """Build ``cls`` from defaults, the YAML file and ``environ``; raise SettingsError on any fault.
    A renamed key given under its old name is appended to ``notes`` as one line for the log."""
    environ = dict(environ or {})
    if config_path is None and environ.get("BOOTYARD_CONFIG"):
        config_path = environ["BOOTYARD_CONFIG"]
    sections = {f.name: f for f in dataclasses.fields(cls)}
    raw: dict[str, dict[str, tuple[Any, str]]] = {name: {} for name in sections}

    if config_path is not None:
        source = f"file {config_path}"
        for section, key, value in _read_yaml(Path(config_path)):
            if section not in sections:
                if section in KNOWN_SECTIONS:
                    continue
                raise SettingsError(
                    f"{section}: unknown section in {source} "
                    f"(known: {', '.join(sorted(KNOWN_SECTIONS))})")
            raw[section][key] = (value, source)

    if environ.get("BOOTYARD_REDIS_URL") and "redis" in sections:
        raw["redis"]["url"] = (environ["BOOTYARD_REDIS_URL"], "environment BOOTYARD_REDIS_URL")
    for name, value in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or name in _NOT_SETTINGS or name in native.SWITCHES:
            continue
        rest = name[len(ENV_PREFIX):]
        if "__" not in rest:
            raise SettingsError(
                f"{name}: not a setting; use {ENV_PREFIX}<SECTION>__<KEY>, e.g. BOOTYARD_LOG__FORMAT")
        section, key = (part.lower() for part in rest.split("__", 1))
        if section not in sections:
            if section in KNOWN_SECTIONS:
                continue
            raise SettingsError(f"{name}: unknown section {section!r}")
        raw[section][key] = (value, f"environment {name}")

    hints = typing.get_type_hints(cls)
    built = {name: _build_section(name, hints[name], raw[name], notes) for name in sections}
    return cls(**built)


def _read_yaml(path: Path):
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SettingsError(f"config file {path}: cannot read it: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise SettingsError(f"config file {path}: not valid YAML: {exc}") from None
    if data is None:
        return
    if not isinstance(data, dict):
        raise SettingsError(f"config file {path}: the top level must be a mapping of sections")
    for section, body in data.items():
        if body is None:
            continue
        if not isinstance(body, dict):
            raise SettingsError(f"{section}: in file {path}: a section must be a mapping of keys")
        for key, value in body.items():
            yield str(section), str(key), value


def _build_section(section: str, section_cls: type, values: dict[str, tuple[Any, str]],
                   notes: list[str] | None = None):
    hints = typing.get_type_hints(section_cls)
    fields = {f.name: f for f in dataclasses.fields(section_cls)}
    renamed = {f.metadata["formerly"]: f.name for f in fields.values()
               if f.metadata.get("formerly")}
    for old, new in renamed.items():
        if old in values:
            value, source = values.pop(old)
            if new in values:
                raise SettingsError(
                    f"{section}.{old} (from {source}) is the old name of {section}.{new}, which "
                    f"is set too (from {values[new][1]}): remove {section}.{old}")
            values[new] = (value, source)
            if notes is not None:
                notes.append(f"{section}.{old} (from {source}) is now called {section}.{new}; "
                             f"the old name still works but will go: rename it")
    kwargs = {}
    for key, (value, source) in values.items():
        if key not in fields:
            raise SettingsError(
                f"{section}.{key}: unknown key (from {source}); "
                f"{section} has: {', '.join(sorted(fields))}")
        fld = fields[key]
        try:
            converted = _convert(value, hints[key])
            if fld.metadata.get("choices") and converted not in fld.metadata["choices"]:
                raise ValueError(f"must be one of {', '.join(map(str, fld.metadata['choices']))}")
            if fld.metadata.get("check"):
                fld.metadata["check"](converted)
        except (ValueError, TypeError) as exc:
            raise SettingsError(f"{section}.{key} = {value!r} (from {source}): {exc}") from None
        kwargs[key] = converted
    return section_cls(**kwargs)


def _convert(value: Any, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.strip() == ""):
            return None
        return _convert(value, args[0])
    if origin is tuple:
        (item,) = {a for a in typing.get_args(hint) if a is not Ellipsis}
        if isinstance(value, str):
            items = [v.strip() for v in value.split(",") if v.strip()]
        elif isinstance(value, (list, tuple)):
            items = list(value)
        else:
            raise ValueError("expected a list (or comma-separated text)")
        return tuple(_convert(v, item) for v in items)
    if hint is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ValueError("expected true or false")
    if hint is int:
        if isinstance(value, bool):
            raise ValueError("expected an integer, got a boolean")
        if isinstance(value, int):
            return value
        try:
            return int(str(value).strip(), 0)
        except ValueError:
            raise ValueError("expected an integer") from None
    if hint is float:
        if isinstance(value, bool):
            raise ValueError("expected a number, got a boolean")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError("expected a number") from None
    if hint is str:
        if isinstance(value, (dict, list)):
            raise ValueError("expected text")
        return str(value)
    raise TypeError(f"unsupported setting type {hint!r}")


def describe(cls: type) -> list[tuple[str, Any, str]]:
    """(``section.key``, default, help) for every setting of ``cls``: used by docs and ``--help``."""
    rows = []
    hints = typing.get_type_hints(cls)
    for section in dataclasses.fields(cls):
        for fld in dataclasses.fields(hints[section.name]):
            rows.append((f"{section.name}.{fld.name}", fld.default, fld.metadata.get("help", "")))
    return rows
