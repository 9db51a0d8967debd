"""What every config model shares: no unknown keys, frozen, no inline secrets; and how a
secret named by `*_env`/`*_file` is read."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator, model_validator

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
SECRET_WORDS = ("password", "token", "secret")


class ConfigError(Exception):
    """A config that cannot be used; `errors` holds one `path: message` line each."""

    def __init__(self, errors: list[str]):
        super().__init__("\n".join(errors))
        self.errors = errors


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _no_inline_secrets(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in data:
                if isinstance(key, str) and key in SECRET_WORDS + ("webhook_secret",):
                    raise ValueError(
                        f"inline secret '{key}' is not allowed; use {key}_env or {key}_file"
                    )
        return data

    @field_validator("*", mode="before")
    @classmethod
    def _strict_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        """A number is a number: `yes` (a YAML boolean) or `"30"` is not read as one."""
        field = cls.model_fields.get(info.field_name or "")
        if field is None or not _numeric(field.annotation):
            return value
        if isinstance(value, bool):
            raise ValueError(f"expected a number, not the boolean {str(value).lower()}")
        if isinstance(value, str):
            raise ValueError(f"expected a number, not the string {value!r}")
        return value


def _numeric(annotation: Any) -> bool:
    """`int`, `float` or an optional one (a field a YAML number fills)."""
    if annotation in (int, float):
        return True
    args = getattr(annotation, "__args__", ())
    return (
        bool(args)
        and all(a in (int, float, type(None)) for a in args)
        and (int in args or float in args)
    )


def read_secret(env: str | None, file: str | None) -> str | None:
    """Resolve a secret named in the config; None when neither is set or it is empty.

    Surrounding whitespace (a Kubernetes Secret's trailing newline) is stripped, with a
    warning naming where it came from, before the value is used or registered for redaction.
    """
    if env:
        value = os.environ.get(env)
        if value and value.strip():
            return _normalised(value, f"environment variable {env}")
    if file:
        try:
            text = Path(file).expanduser().read_text()
        except OSError:
            return None
        return _normalised(text, f"file {file}") if text.strip() else None
    return None


def _normalised(value: str, source: str) -> str:
    clean = value.strip()
    if clean != value and not (source.startswith("file ") and value == clean + "\n"):
        logging.getLogger("deploybot.config").warning(
            "secret from %s has surrounding whitespace; using it stripped", source
        )
    return clean
