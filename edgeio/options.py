"""Command-line values shared by the commands: parsed in edgeio/parse.py (one home)."""

from edgeio.parse import parse_int, parse_params  # noqa: F401  (callers import them from here)
