"""README.md and docs/formats.md hold to the code: commands, values and columns they name."""

import re

from edgeio import paths

README = (paths.PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
FORMATS = (paths.PROJECT_ROOT / "docs" / "formats.md").read_text(encoding="utf-8")


def test_readme_is_merged_and_lists_every_command():
    for doc in (README, FORMATS):
        assert not re.search(r"^(<<<<<<<|=======|>>>>>>>)( |$)", doc, re.M)
    import importlib.util
    spec = importlib.util.spec_from_file_location("edgeio_tasks_doc", paths.PROJECT_ROOT / "tasks.py")
    tasks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tasks)
    from invoke import Collection
    table = README[README.index("| command | what it does |"):]
    table = table[:table.index("\n\n")]
    for name in Collection.from_module(tasks).task_names:
        if name in ("test", "setup"):
            continue
        assert f"`edgeio {name}" in table, name
    for needed in ("report --compare", "testbed up xen", "edgeio --version", "--format"):
        assert needed in table, needed


def test_readme_flush_values_are_the_tenders():
    from model.environments import FLUSH_ALIASES, FLUSH_POLICIES
    for values in re.findall(r"flush=([\w-]+(?:\\\|[\w-]+)+)", README):
        for v in values.split("\\|"):
            assert v in FLUSH_POLICIES or v in FLUSH_ALIASES, v
    assert "flush=block\\|call" not in README


def test_formats_name_the_export_columns():
    from edgeio.commands.report import COMPARE_COLUMNS
    from model.predict import COLUMNS
    section = FORMATS[FORMATS.index("## Exports"):]
    for col in COLUMNS + COMPARE_COLUMNS:
        assert f"`{col}`" in section, col
    assert "measured_s\nis the cell's median" in section or "measured_s is the cell's median" in section.replace("\n", " ")
