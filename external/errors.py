"""The errors of code written for Dassl and OpenAI's clip that the user can act on."""
from __future__ import annotations

from engine.errors import UserError

DOC = "docs/EXTENDING.md#run-a-trainer-written-for-dassl"


class ExternalCodeError(UserError, ImportError):
    """A trainer/dataset file that cannot be loaded or run as given (unsupported API, a name
    only a fork provides, a table without the user's dataset)."""
