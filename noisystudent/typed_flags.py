"""Typed job configs whose command-line flags are generated from the dataclass: one default per knob.

    @dataclasses.dataclass(frozen=True)
    class SelectConfig:
        predictions: str = flag(help="...")              # no default: a required flag
        min_threshold: float = flag(0.3, help="...")     # --min_threshold, type float
        stats_only: bool = flag(False, help="...")       # --stats_only, a switch

    config, rest = parse(SelectConfig, parser, argv)    # rest: the flags the job does not own

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


def add_flags(parser: argparse.ArgumentParser, cls: type) -> argparse.ArgumentParser:
    """One --flag per field of the dataclass `cls`, typed and documented from the field."""
    types = field_types(cls)
    for field in dataclasses.fields(cls):
        kind = types[field.name]
        help_text = field.metadata.get("help", "")
        name = f"--{field.name}"
        if kind is bool:
            parser.add_argument(name, action="store_true", help=help_text)
        elif field.default is dataclasses.MISSING:
            parser.add_argument(name, type=_TYPES[kind], required=True, help=help_text)
        else:
            shown = "" if field.default in (None, "") else f" (default {field.default})"
            parser.add_argument(name, type=_TYPES[kind], default=field.default, help=help_text + shown)
    return parser


def from_namespace(cls: type[T], namespace: argparse.Namespace) -> T:
    return cls(**{f.name: getattr(namespace, f.name) for f in dataclasses.fields(cls)})


def parse(cls: type[T], parser: argparse.ArgumentParser,
          argv: Optional[Sequence[str]]) -> tuple[T, list[str]]:
    """(the config, the flags the parser does not know: Beam's)."""
    namespace, rest = parser.parse_known_args(argv)
    return from_namespace(cls, namespace), rest


def override(config: T, argv: Sequence[str], prog: str = "") -> T:
    """`config` with the flags in `argv` applied on top (e.g. a loop's --select_args); every flag
    must be one of the config's."""
    if not argv:
        return config
    parser = argparse.ArgumentParser(prog=prog or type(config).__name__, argument_default=argparse.SUPPRESS)
    for name, kind in field_types(type(config)).items():
        if kind is bool:
            parser.add_argument(f"--{name}", action="store_true")
        else:
            parser.add_argument(f"--{name}", type=_TYPES[kind])
    namespace, unknown = parser.parse_known_args(list(argv))
    if unknown:
        raise ValueError(f"{parser.prog}: unknown flag(s) {' '.join(unknown)}")
    return dataclasses.replace(config, **vars(namespace))
