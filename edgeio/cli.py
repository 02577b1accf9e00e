"""The `edgeio` command: invoke's Program over the project's tasks (tasks.py), so
`edgeio measure ...` is `invoke measure ...` without a tasks file in the current directory.

tasks.py sits in the project root beside the probes and unikernel sources every command
builds from, so it is loaded from there rather than installed as a module of its own.
"""

import importlib.util
import sys

from edgeio import __version__, paths


def _tasks_module():
    path = paths.PROJECT_ROOT / "tasks.py"
    spec = importlib.util.spec_from_file_location("edgeio_tasks", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def program():
    from invoke import Collection, Exit, ParseError, Program

    class EdgeioProgram(Program):
        """invoke's Program, but an option it cannot parse (unknown, missing its value) is bad
        input like any other: one line and exit status 2 (invoke itself exits 1)."""

        def parse_core(self, argv):
            try:
                super().parse_core(argv)
            except ParseError as e:
                raise Exit(f"error: {e}", code=2) from None

        def parse_tasks(self):
            try:
                super().parse_tasks()
            except ParseError as e:
                raise Exit(f"error: {e}", code=2) from None

    namespace = Collection.from_module(_tasks_module())
    return EdgeioProgram(namespace=namespace, version=__version__, name="edgeio", binary="edgeio")


def main(argv=None) -> None:
    program().run(argv if argv is not None else sys.argv)


if __name__ == "__main__":
    main()
