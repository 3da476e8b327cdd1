"""Errors meant for people.

Every failure a user can cause or fix (bad input, a missing tool, an RPC that does not answer)
is a :class:`ContagionError`: the CLI prints its message on one line as ``error: ...`` and exits
with status 2. Anything else is a bug and keeps its traceback.
"""


class ContagionError(Exception):
    """A failure with a one-line explanation for the user (exit status 2 from the CLI)."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))  # one line, whatever the caller built


class NotAnvilError(ContagionError):
    """A transaction-sending path was pointed at a chain whose client is not anvil."""
