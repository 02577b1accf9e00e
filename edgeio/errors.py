"""The one exception type that reaches a user as a one-line error (exit 2)."""


class UserError(Exception):
    """Bad input or an unusable environment: shown as one line, exit status 2."""

    exit_code = 2
