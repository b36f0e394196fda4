"""Typed job configs whose command-line flags are generated from the dataclass: one default per knob.

    @dataclasses.dataclass(frozen=True)
    class SelectConfig:
        predictions: str = flag(help="...")              # no default: a required flag
        min_threshold: float = flag(0.3, help="...")     # --min_threshold, type float
        stats_only: bool = flag(False, help="...")       # --stats_only (a switch) or --stats_only false

    config, rest = parse(SelectConfig, parser, argv)    # rest: the flags the job does not own
    given(SelectConfig, ["--min_threshold", "0.5"])      # {"min_threshold": 0.5}: only the flags given

A boolean flag alone means true, and takes a value too (`--saved_model false`), so a field that
defaults to true can be turned off: one rule for every job's flags and the trainer's.

A job's `run_config(config)` is its typed entry (the loop and the demo call it); its
`run(argv)` parses flags with `parse` and calls it.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any, Optional, Sequence, TypeVar

T = TypeVar("T")
_TYPES = {int: int, float: float, str: str}


def flag(default: Any = dataclasses.MISSING, *, help: str) -> Any:  # noqa: A002 (argparse's word)
    """A config field with its flag's help; without a default the flag is required."""
    return dataclasses.field(default=default, metadata={"help": help})


def _base_type(annotation) -> type:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return args[0] if typing.get_origin(annotation) is typing.Union and len(args) == 1 else annotation


def field_types(cls: type) -> dict[str, type]:
    """Each field of the dataclass `cls` -> its type (Optional[X] as X)."""
    hints = typing.get_type_hints(cls)
    return {f.name: _base_type(hints[f.name]) for f in dataclasses.fields(cls)}


def parse_bool(text: str) -> bool:
    """true/false (also 1/0, yes/no, on/off): what a boolean flag takes."""
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def add_flags(parser: argparse.ArgumentParser, cls: type, only_given: bool = False,
              default_note: str = "") -> argparse.ArgumentParser:
    """One --flag per field of the dataclass `cls`, typed and documented from the field.

    only_given: no flag is required and none has a default in the namespace (argparse.SUPPRESS), so it
    holds only what the user gave, to lay over another config (a preset; a loop step's own settings).
    default_note: said after each default in the help (e.g. "unless the preset sets it")."""
    types = field_types(cls)
    for field in dataclasses.fields(cls):
        kind = types[field.name]
        help_text = field.metadata.get("help", "")
        if field.default not in (dataclasses.MISSING, None, ""):
            help_text += f" (default {str(field.default).lower() if kind is bool else field.default}{default_note})"
        options: dict[str, Any] = {"help": help_text}
        if kind is bool:
            options.update(nargs="?", const=True, type=parse_bool, metavar="true|false")
        else:
            options["type"] = _TYPES[kind]
        if only_given:
            options["default"] = argparse.SUPPRESS
        elif field.default is dataclasses.MISSING:
            options["required"] = True
        else:
            options["default"] = field.default
        parser.add_argument(f"--{field.name}", **options)
    return parser


def from_namespace(cls: type[T], namespace: argparse.Namespace) -> T:
    return cls(**{f.name: getattr(namespace, f.name) for f in dataclasses.fields(cls)})


def parse(cls: type[T], parser: argparse.ArgumentParser,
          argv: Optional[Sequence[str]]) -> tuple[T, list[str]]:
    """(the config, the flags the parser does not know: Beam's)."""
    namespace, rest = parser.parse_known_args(argv)
    return from_namespace(cls, namespace), rest


def given(cls: type, argv: Sequence[str], prog: str = "") -> dict[str, Any]:
    """The fields the flags in `argv` set (typed), e.g. of a loop's --select_args; every flag must be one
    of the config's."""
    parser = add_flags(argparse.ArgumentParser(prog=prog or cls.__name__), cls, only_given=True)
    namespace, unknown = parser.parse_known_args(list(argv))
    if unknown:
        raise ValueError(f"{parser.prog}: unknown flag(s) {' '.join(unknown)}")
    return vars(namespace)

