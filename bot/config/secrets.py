"""Secrets the config names (`*_env`, `*_file`) that cannot be read here, at their YAML path.

`check-config` reports every one of them; `run` refuses to start when the SASL password is
missing, because connecting without the login the config asks for would silently make every
user "anyone" (and the bot's nick unprotected). Values are never printed, only names.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from bot.config.model import Config, read_secret

SASL_PATH = "chat.irc.sasl."
SASL_WHY = " (SASL needs it; the bot does not connect without the login it was told to use)"


def _problem(where: str, env: str | None, file: str | None) -> str | None:
    """Why the secret named by `env`/`file` cannot be read (None: it can)."""
    if read_secret(env, file) is not None:
        return None
    why = []
    if env:
        why.append(f"{env} is not set")
    if file:
        try:
            Path(file).expanduser().read_text()
            why.append(f"{file} is empty")
        except OSError as exc:
            why.append(f"cannot read {file} ({exc.strerror})")
    return f"{where}_{'env' if env else 'file'}: " + " and ".join(why)


def _walk(value: object, path: str, out: list[str]) -> None:
    if isinstance(value, BaseModel):
        fields = type(value).model_fields
        for base in sorted({n.rsplit("_", 1)[0] for n in fields if n.endswith(("_env", "_file"))}):
            env, file = getattr(value, f"{base}_env", None), getattr(value, f"{base}_file", None)
            if env or file:
                where = f"{path}.{base}" if path else base
                if (problem := _problem(where, env, file)) is not None:
                    out.append(problem)
        for name in fields:
            if not name.endswith(("_env", "_file")):
                _walk(getattr(value, name), f"{path}.{name}" if path else name, out)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _walk(item, f"{path}[{i}]", out)
    elif isinstance(value, dict):
        for key, item in value.items():
            _walk(item, f"{path}.{key}", out)


def unreadable_secrets(config: Config) -> list[str]:
    """`path: NAME is not set` / `path: cannot read FILE (...)` for each named secret."""
    out: list[str] = []
    _walk(config, "", out)
    return out


def sasl_problems(config: Config) -> list[str]:
    """The SASL password problem, if the config asks for SASL and it cannot be read."""
    irc = config.chat.irc
    if irc is None or irc.sasl is None:
        return []
    if not irc.sasl.password_env and not irc.sasl.password_file:
        return ["chat.irc.sasl: set password_env or password_file" + SASL_WHY]
    return [p + SASL_WHY for p in unreadable_secrets(config) if p.startswith(SASL_PATH)]
