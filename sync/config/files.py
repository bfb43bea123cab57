"""The configuration's YAML files: read (every problem named, never a traceback), their
validation problems as lines with their YAML paths, and the base of every model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from sync.errors import ConfigError


class Model(BaseModel):
    """Every model of the configuration: unknown keys refused, values frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def job_identity(path: str) -> tuple[str, int | None]:
    """A job file's name and segment id, read leniently, for the report of a run that
    failed before the file was loaded, or of a file that does not load: its name (else
    the file's), and its segment id when it has one."""
    name, segment_id = Path(path).stem, None
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except Exception:  # any failure: the file's own name will do
        return name, segment_id
    if isinstance(data, dict):
        if isinstance(data.get("name"), str) and data["name"].strip():
            name = data["name"]
        if isinstance(data.get("segment_id"), int) and not isinstance(data["segment_id"], bool):
            segment_id = data["segment_id"]
    return name, segment_id


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), ["file not found"]) from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), [f"cannot read: {exc.__class__.__name__}"]) from None
    try:
        data = yaml.safe_load(text)
    except RecursionError:
        # PyYAML parses nested blocks recursively: a hostile file exhausts Python's stack.
        raise ConfigError(str(path), ["not valid YAML: nested too deeply to read"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(str(path), [f"{where}not valid YAML: {problem}"]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(str(path), [f"expected a mapping of keys, got {type(data).__name__}"])
    return data


def format_validation_error(exc: ValidationError) -> list[str]:
    """One line per problem: ``targets.columns[1]: message``."""
    problems = []
    for error in exc.errors():
        loc = ""
        for part in error["loc"]:
            if isinstance(part, int):
                loc += f"[{part}]"
            elif part in ("function-after", "function-before"):
                continue
            else:
                loc += f".{part}" if loc else str(part)
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        elif error["type"] == "missing":
            message = "required key is missing"
        problems.append(f"{loc or '(top level)'}: {message}")
    return problems
