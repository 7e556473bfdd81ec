"""Loading policy files: read the TOML, validate it against the file format (`schema.py`), word every
problem as file / key / reason, check the set as a whole (unique names, one reachable fallback), and
return a complete `PolicySet` or raise `PolicyError` with every problem; never a partial set."""

from __future__ import annotations

import difflib
import tomllib
import types
from pathlib import Path
from typing import Annotated, Any, Sequence, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from workflow.readiness.rules.policy.model import Policy
from workflow.readiness.rules.policy.policy_set import PolicySet
from workflow.readiness.rules.policy.problems import PolicyError, PolicyProblem
from workflow.readiness.rules.policy.schema import PolicyFileSpec, PolicySpec, TemplateSpec, kind
from workflow.readiness.rules.policy.templates import Template


def load_policies(paths: Path | str | Sequence[Path | str]) -> PolicySet:
    """Load a complete PolicySet from a directory (every `*.toml` in it, by file name) or from files (in
    the order given), or raise PolicyError naming, for every problem, the file, the key path and the
    reason. A caller reloading on SIGHUP keeps its old set when this raises."""
    if isinstance(paths, (str, Path)):
        path = Path(paths)
        if path.is_dir():
            files = policy_files(path)
            if not files:
                raise PolicyError(PolicyProblem(str(path), "", "no *.toml policy file in this directory"))
        else:
            files = [path]
        label = str(path)
    else:
        files = [Path(p) for p in paths]
        if not files:
            raise PolicyError(PolicyProblem("(no file)", "", "no policy file given"))
        label = ", ".join(str(f) for f in files)
    problems: list[PolicyProblem] = []
    docs = []
    for f in files:
        data = _read(f, problems)
        if data is not None:
            docs.append((str(f), data))
    return _assemble(docs, label, problems)


def loads_policies(text: str, file: str = "<string>") -> PolicySet:
    """Load a PolicySet from the text of one policy file (as `load_policies` does for a file)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(PolicyProblem(file, "", f"not valid TOML: {exc}")) from None
    return _assemble([(file, data)], file, [])


def policy_files(folder: Path) -> list[Path]:
    """The files a policy folder holds: every `*.toml`, in the order they are read."""
    return sorted(folder.glob("*.toml"))


def _read(path: Path, problems: list[PolicyProblem]) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        problems.append(PolicyProblem(str(path), "", "policy file not found"))
    except IsADirectoryError:
        problems.append(PolicyProblem(str(path), "", "is a directory, not a policy file"))
    except OSError as exc:
        problems.append(PolicyProblem(str(path), "", f"cannot read: {exc.strerror or exc}"))
    except UnicodeDecodeError as exc:
        problems.append(PolicyProblem(str(path), "", f"not UTF-8 text: {exc}"))
    except tomllib.TOMLDecodeError as exc:
        problems.append(PolicyProblem(str(path), "", f"not valid TOML: {exc}"))
    return None


def _document(data: dict[str, Any], file: str, problems: list[PolicyProblem]):
    """Policies and templates of one parsed file: ([(policy, key, position)], [(template, key)]). Every
    table is validated, so each problem of the file is found."""
    policies: list[tuple[Policy, str, int]] = []
    templates: list[tuple[Template, str]] = []
    try:
        PolicyFileSpec.model_validate(data)
    except ValidationError as exc:
        problems += _problems(exc, file, PolicyFileSpec, data)
    for kind_, spec in (("policy", PolicySpec), ("template", TemplateSpec)):
        tables = data.get(kind_, [])
        if not (isinstance(tables, list) and all(isinstance(t, dict) for t in tables)):
            continue  # reported above
        for i, table in enumerate(tables):
            where = f"{kind_}[{i}]"
            try:
                built = spec.model_validate(table).build(f"{file}: {where}")
            except ValidationError as exc:
                problems += _problems(exc, file, spec, table, (kind_, i))
                continue
            if kind_ == "policy":
                policies.append((built, where, i))
            else:
                templates.append((built, where))
    return policies, templates


def _assemble(docs: list[tuple[str, dict[str, Any]]], label: str, problems: list[PolicyProblem]) -> PolicySet:
    entries: list[tuple[Policy, str, str, tuple[int, int]]] = []  # policy, file, key, (file index, position)
    templates: list[tuple[Template, str, str]] = []
    for index, (file, data) in enumerate(docs):
        ps, ts = _document(data, file, problems)
        entries += [(p, file, key, (index, pos)) for p, key, pos in ps]
        templates += [(t, file, key) for t, key in ts]
    for kind_, items in (("policy", [(p.name, f, k) for p, f, k, _ in entries]),
                         ("template", [(t.name, f, k) for t, f, k in templates])):
        first: dict[str, tuple[str, str]] = {}
        for name, file, key in items:
            if name in first:
                other_file, other_key = first[name]
                problems.append(PolicyProblem(file, f"{key}.name", f"duplicate {kind_} name {name!r} "
                                                                   f"(also {other_file}: {other_key})"))
            else:
                first[name] = (file, key)
    entries.sort(key=lambda e: (e[0].order, e[3]))
    fallback = next((e for e in entries if e[0].applies_to.matches_everything), None)
    if fallback is None and not problems:
        problems.append(PolicyProblem(label, "policy", "no fallback policy: one policy must match every workitem "
                                                       "(a policy with no accession_numbers, "
                                                       "scheduled_workitem_codes or worklist_labels in "
                                                       "applies_to), like the shipped default.toml"))
    if fallback is not None:
        cut = entries.index(fallback)
        for p, file, key, _ in entries[cut + 1:]:
            problems.append(PolicyProblem(file, f"{key}.order",
                                          f"policy {p.name!r} can never be selected: the fallback policy "
                                          f"{fallback[0].name!r} ({fallback[0].source}, order "
                                          f"{fallback[0].order}) matches every workitem and comes first; "
                                          f"give {p.name!r} a lower order"))
    if problems:
        raise PolicyError(*problems)
    return PolicySet(policies=tuple(e[0] for e in entries), templates=tuple(t for t, _, _ in templates),
                     sources=tuple(f for f, _ in docs))


# --- pydantic's errors in our words ---------------------------------------------------------------------

_EXPECTED = {"model_type": "a table", "dict_type": "a table", "list_type": "a list", "bool_type": "true or false",
             "int_type": "a whole number"}


def _problems(exc: ValidationError, file: str, spec: type[BaseModel], data: Any,
              prefix: tuple = ()) -> list[PolicyProblem]:
    """One PolicyProblem per error, in the order of the keys in the file."""
    found = []
    for error in exc.errors(include_url=False):
        loc, ctx = tuple(error["loc"]), error.get("ctx") or {}
        reason = _reason(error, spec, loc)
        if "also" in ctx:
            reason += f" (also at {_dotted(prefix + loc + (ctx['also'],))})"
        if "item" in ctx:
            loc += (ctx["item"],)
        found.append((_position(data, loc), PolicyProblem(file, _dotted(prefix + loc), reason)))
    return [p for _, p in sorted(found, key=lambda f: f[0])]


def _reason(error: dict, spec: type[BaseModel], loc: tuple) -> str:
    kind_of_error, value = error["type"], error.get("input")
    if kind_of_error == "policy":
        return error["ctx"]["reason"]
    if kind_of_error == "missing":
        hint = _table_at(spec, loc[:-1]).model_fields[loc[-1]].description
        return "required key is missing" + (f" ({hint})" if hint else "")
    if kind_of_error == "extra_forbidden":
        allowed = list(_table_at(spec, loc[:-1]).model_fields)
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        return (f"unknown key{f'; did you mean {close[0]!r}?' if close else ''} "
                f"(allowed here: {', '.join(allowed)})")
    if kind_of_error in _EXPECTED:
        return f"expected {_EXPECTED[kind_of_error]}, got {kind(value)}"
    if kind_of_error == "greater_than_equal":
        return f"must be at least {error['ctx']['ge']}, got {value}"
    return error["msg"]


def _table_at(spec: type[BaseModel], loc: tuple) -> type[BaseModel]:
    """The table model at a key path: `policy.complete_when.all_of[0]` -> ConditionSpec."""
    kind_: Any = spec
    for part in loc:
        kind_ = _bare(kind_)
        kind_ = get_args(kind_)[0] if isinstance(part, int) else kind_.model_fields[part].annotation
    return _bare(kind_)


def _bare(kind_: Any) -> Any:
    """X of Optional[X] and Annotated[X, ...]."""
    while True:
        origin = get_origin(kind_)
        if origin is Annotated:
            kind_ = get_args(kind_)[0]
        elif origin in (Union, types.UnionType):
            kind_ = next(a for a in get_args(kind_) if a is not type(None))
        else:
            return kind_


def _dotted(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _position(data: Any, loc: tuple) -> tuple[int, ...]:
    """Where a key path is in the file (keys absent from their table after the present ones)."""
    out = []
    for part in loc:
        if isinstance(part, int) and isinstance(data, list) and part < len(data):
            out.append(part)
            data = data[part]
        elif isinstance(part, str) and isinstance(data, dict):
            keys = list(data)
            out.append(keys.index(part) if part in data else len(keys))
            data = data.get(part)
        else:
            break
    return tuple(out)
