"""The one exception type users see.

Every error a user can cause (a bad image, a missing model, a malformed vocabulary) is a
`PoemgenError` whose message is a single line naming the input and what to do. The CLI prints
that line and exits non-zero; anything else is a bug and keeps its traceback.
"""


class PoemgenError(Exception):
    """A user-facing error with a one-line, actionable message."""
