"""jsonargparse's errors as one line that names the key, what was given and what would do.

A typo'd key or a value of the wrong type makes jsonargparse raise an ``ArgumentError`` whose message nests
every alternative it tried ("Does not validate against any of the Union subtypes ... Expected a <class
'NoneType'>"), and the command used to print the whole usage text above it. The reason is one of a few shapes;
``config_error`` picks it out of the nesting and says it in the user's terms (``data.init_args.batch_sise``,
not ``Parser key "data"``), with the closest accepted name when a name was misspelt."""

from __future__ import annotations

import difflib
import importlib
import inspect
import re

from ..errors import MedTransferError

PARSER_KEY = re.compile(r'Parser key "([^"]+)"')
CLASS_PATH = re.compile(r"Problem with given class_path '([^']+)'")
NOT_ACCEPTED = re.compile(r"Option '([^']+)' is not accepted")
EXPECTED = re.compile(r"Expected an? (?:<class '([^']+)'>|([\w. ]+?))(?:\. Got value: (.*))?$")
GIVEN_VALUE = re.compile(r"^\s*Given value: (.*)$", re.MULTILINE)
UNRECOGNIZED = re.compile(r"unrecognized arguments: (.*)")
MISSING_FILE = re.compile(r"File does not exist: '([^']+)'")
NOT_A_CLASS = re.compile(r"Expected a dot import path string: (\S+)")
SUBTYPES = re.compile(r"^\s*Subtypes: \[(.*)\]$", re.MULTILINE)
LITERAL = re.compile(r"Literal\[([^\]]*)\]")
NONE_TYPE = "NoneType"


class ConfigError(MedTransferError, ValueError):
    """A command line or config file that the parser refuses."""


def config_error(error: Exception, verb: str, known_keys: list[str]) -> ConfigError:
    """The one-line ``ConfigError`` for a jsonargparse error raised while parsing ``verb``'s arguments;
    ``known_keys``: the parser's dotted keys, for suggestions."""
    text = str(error).strip()
    reason = (_unrecognized(text, known_keys) or _missing_file(text) or _not_accepted(text)
              or _not_a_class(text) or _not_a_choice(text) or _wrong_type(text) or _first_line(text))
    return ConfigError(f"{reason} (see `medtransfer {verb} --help`)")


def _first_line(text: str) -> str:
    return text.splitlines()[0] if text else "the arguments do not parse"


def _key_path(text: str) -> str:
    """The dotted key the message is about: the nested ``Parser key`` names joined, a subclass group's
    ``init_args`` spelled out as in a config."""
    keys = PARSER_KEY.findall(text)
    if not keys:
        return ""
    path = keys[0]
    for key in keys[1:]:
        path = f"{path}.init_args.{key}" if CLASS_PATH.search(text) else f"{path}.{key}"
    return path


def _unrecognized(text: str, known_keys: list[str]) -> str | None:
    match = UNRECOGNIZED.search(text)
    if match is None:
        return None
    flag = match.group(1).split()[0]
    key = flag.lstrip("-").split("=")[0]
    close = difflib.get_close_matches(key, known_keys, n=1, cutoff=0.75)
    hint = f"; did you mean --{close[0]}?" if close else ""
    return f"unknown option {flag}{hint}"


def _missing_file(text: str) -> str | None:
    match = MISSING_FILE.search(text)
    if match is None:
        return None
    key = PARSER_KEY.search(text)
    where = f"--{key.group(1)}" if key else "a path"
    return f"{where}: no such file {match.group(1)}"


def _not_accepted(text: str) -> str | None:
    match = NOT_ACCEPTED.search(text)
    if match is None:
        return None
    option = match.group(1)
    group = PARSER_KEY.search(text)
    class_path = CLASS_PATH.search(text)
    prefix = f"{group.group(1)}.init_args." if group and class_path else (f"{group.group(1)}." if group else "")
    names = _accepted_options(class_path.group(1)) if class_path else []
    close = difflib.get_close_matches(option, names, n=1, cutoff=0.6)
    owner = f"{class_path.group(1).rsplit('.', 1)[-1]} takes no option" if class_path else "no option"
    hint = f"; did you mean {prefix}{close[0]}?" if close else ""
    return f"{prefix}{option}: {owner} {option!r}{hint}"


def _not_a_class(text: str) -> str | None:
    match = NOT_A_CLASS.search(text)
    if match is None:
        return None
    group = PARSER_KEY.search(text)
    key = group.group(1) if group else "the class"
    return (f"{key}: {match.group(1)!r} names no class; give a class path, e.g. "
            f"{'medtransfer.datamodules.ImageFolder' if key == 'data' else 'medtransfer.lightning_modules.Finetune'}")


def _not_a_choice(text: str) -> str | None:
    """A value outside a choice of literals (``trainer.precision``): every accepted value, and the given."""
    subtypes = SUBTYPES.search(text)
    if subtypes is None or "Literal[" not in subtypes.group(1):
        return None
    choices = [choice.strip() for group in LITERAL.findall(subtypes.group(1)) for choice in group.split(",")]
    values = GIVEN_VALUE.findall(text)
    given = f", got {values[-1].strip()!r}" if values else ""
    return f"{_key_path(text) or 'a value'}: expected one of {', '.join(dict.fromkeys(choices))}{given}"


def _wrong_type(text: str) -> str | None:
    """The innermost "Expected a <type>" that is not the ``None`` alternative, with the value given."""
    expectations = []
    for line in text.splitlines():
        match = EXPECTED.search(line.strip().lstrip("- "))
        if match is not None and (match.group(1) or match.group(2)) != NONE_TYPE:
            expectations.append(match)
    if not expectations:
        return None
    last = expectations[-1]
    wanted = (last.group(1) or last.group(2)).rsplit(".", 1)[-1]
    given = last.group(3)
    if given is None:
        values = GIVEN_VALUE.findall(text)
        given = values[-1] if values else None
    nullable = any((m.group(1) or m.group(2)) == NONE_TYPE for m in map(EXPECTED.search, text.splitlines()) if m)
    value = f", got {given.strip()!r}" if given is not None else ""
    return f"{_key_path(text) or 'a value'}: expected {_article(wanted)}{' (or null)' if nullable else ''}{value}"


def _article(type_name: str) -> str:
    return f"an {type_name}" if type_name[:1].lower() in "aeiou" else f"a {type_name}"


def _accepted_options(class_path: str) -> list[str]:
    """The keyword arguments a class takes, following ``**kwargs`` up its bases as jsonargparse does."""
    module, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return []
    names: list[str] = []
    for klass in inspect.getmro(cls):
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        parameters = inspect.signature(init).parameters.values()
        names += [p.name for p in parameters if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            break
    return names
