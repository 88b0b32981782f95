"""Name -> class registries (Dassl's pattern) with did-you-mean errors."""
from __future__ import annotations

import difflib
from typing import Callable, Iterable, TypeVar

from engine.errors import UnknownNameError

T = TypeVar("T")


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """A ' Did you mean X?' suffix for error messages, or '' when nothing is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    if not close:
        lowered = {c.lower(): c for c in choices}
        close = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.5)
        close = [lowered[c] for c in close]
    return f" Did you mean {close[0]!r}?" if close else ""


class Registry:
    """Maps names to classes; `register()` is used as a class decorator."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Callable] = {}

    def register(self, name: str | None = None, replace: bool = False) -> Callable[[T], T]:
        """`replace` lets another object take a registered name (Dassl's `force`)."""

        def deco(obj: T) -> T:
            key = name or obj.__name__
            if key in self._entries and self._entries[key] is not obj and not replace:
                raise KeyError(f"{self.kind} {key!r} is already registered by {self._entries[key]!r}")
            self._entries[key] = obj
            return obj

        return deco

    def get(self, name: str) -> Callable:
        if name not in self._entries:
            raise UnknownNameError(
                f"Unknown {self.kind} {name!r}.{did_you_mean(name, self._entries)} "
                f"Registered: {', '.join(sorted(self._entries))}"
            )
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries


TRAINER_REGISTRY = Registry("trainer")
EVALUATOR_REGISTRY = Registry("evaluator")
