"""Markdown writer: the same document, images as PNG files beside report.md."""

from report.document import Document, Figure, Paragraph, Section, Table, Warnings


# Tables of words, not numbers: left-aligned throughout.
_TEXT_TABLES = {"metadata", "notes", "params", "failed", "campaign", "environments"}


def _esc(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(t: Table) -> str:
    lines = [f"**{_esc(t.caption)}**", "", "| " + " | ".join(_esc(c) for c in t.columns) + " |",
             "|" + "|".join([":--"] + [":--" if t.kind in _TEXT_TABLES else "--:"] * (len(t.columns) - 1)) + "|"]
    for row in t.rows:
        texts = []
        for c in row:
            text = _esc(c.text)
            texts.append(f"**{text}**" if c.attrs.get("significant") == "no" else text)
        lines.append("| " + " | ".join(texts) + " |")
    return "\n".join(lines)


def _block(b) -> str:
    if isinstance(b, Table):
        return _table(b)
    if isinstance(b, Figure):
        return f"![{_esc(b.caption)}]({b.name}.png)\n\n*{_esc(b.caption)}*"
    if isinstance(b, Paragraph):
        return b.text
    if isinstance(b, Warnings):
        return "\n".join([f"> **Warning: {b.title}**", ">"] + [f"> - {i}" for i in b.items])
    if isinstance(b, Section):
        return _section(b)
    raise TypeError(f"unknown block {type(b).__name__}")


def _section(s: Section) -> str:
    parts = ["#" * min(6, s.level) + " " + s.title] + [_block(b) for b in s.blocks]
    return "\n\n".join(parts)


def render(doc: Document) -> str:
    parts = [f"# {doc.title}", *doc.intro] + [_section(s) for s in doc.sections]
    return "\n\n".join(parts) + "\n"
