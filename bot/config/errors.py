"""Config errors as people read them: one `path: message` line each, at the YAML path
(`components.builds-api.pins[0].key: field required`), an unknown key with the nearest
known one (`deploy.timeot: unknown key; did you mean timeout?`). Pure; no config models.
"""

from __future__ import annotations

import difflib
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError


def _format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith(("function-after", "function-before", "literal[", "json-or")):
            continue
        else:
            out += ("." if out else "") + part
    return out or "(top level)"


def nearest(word: str, choices: list[str]) -> str:
    match = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"; did you mean {match[0]}?" if match else ""


def _model_at(root: type[BaseModel], loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model whose keys are valid at `loc` (None when the path leaves the models)."""
    model: Any = root
    keyed = False  # the last field was a mapping: the next part is a key of it
    for part in loc:
        if isinstance(part, int) or part.startswith(("function-", "literal[", "json-or")):
            continue
        if keyed:
            keyed = False
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        if part not in model.model_fields:
            return None
        annotation = model.model_fields[part].annotation
        keyed = get_origin(annotation) is dict
        model = _inner_model(annotation)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _inner_model(annotation: Any) -> Any:
    """`X`, `X | None`, `list[X]`, `dict[str, X]` -> X when X is a model."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in reversed(get_args(annotation)):
        inner = _inner_model(arg)
        if inner is not None:
            return inner
    return None


def format_errors(exc: ValidationError, root: type[BaseModel]) -> list[str]:
    """One `path: message` line per error; an unknown key gets the nearest known one."""
    lines: list[str] = []
    for err in exc.errors():
        msg = err["msg"]
        msg = msg.removeprefix("Value error, ")
        msg = msg[:1].lower() + msg[1:]
        if err["type"] == "extra_forbidden" and err["loc"]:
            parent = _model_at(root, err["loc"][:-1])
            known = sorted(parent.model_fields) if parent is not None else []
            msg = "unknown key" + nearest(str(err["loc"][-1]), known)
        line = f"{_format_loc(err['loc'])}: {msg}"
        if line not in lines:
            lines.append(line)
    return lines
