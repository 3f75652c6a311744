"""The one exception family every package raises.

`memory` sits at the bottom of the import graph, so the base classes live here
and `executors` and `agent` can derive from them without importing upward.
"""

from __future__ import annotations


class AutoGlmError(Exception):
    """Base of every error Open-AutoGLM raises on purpose."""


class UserError(AutoGlmError):
    """A mistake the user can fix; the message says what is wrong and how to fix it.

    The CLI prints it as one line on stderr and exits with code 2, no traceback.
    """


class DataError(UserError):
    """The data cannot be used as given (missing file, unknown column, one class, ...)."""


class InvalidProposal(AutoGlmError):
    """A proposal lies outside the search space and could not be repaired."""


class StoreError(UserError):
    """The study database is missing, corrupt or of a newer schema."""
