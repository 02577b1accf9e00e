"""HTML writer: one self-contained file, the PNGs embedded as base64 data URIs."""

import base64
from html import escape

from report.document import Cell, Document, Figure, Paragraph, Section, Table, Warnings

_CSS = """
body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em;font-size:0.9em}
th,td{border:1px solid #ccc;padding:0.25em 0.6em;text-align:right;vertical-align:top}
th{background:#f3f3f3}
td.label,th.label{text-align:left}
caption{text-align:left;font-weight:600;padding:0.3em 0}
figure{margin:1em 0}
figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:0.9em;color:#555}
.warnings{border:2px solid #c80;background:#fff6e0;padding:0.5em 1em;margin:1em 0}
.warnings h3{margin:0.2em 0;color:#a60}
td.not-significant{background:#fdecea}
table.metadata td,table.campaign td,table.environments td,table.notes td,table.failed td,
table.params td:last-child,table.params td:nth-child(4){text-align:left}
table.verdict{font-size:0.85em}
table.verdict tr:last-child th,table.verdict tr:last-child td{border-top:2px solid #888;font-weight:600}
"""


def _attrs(attrs: dict) -> str:
    return "".join(f' data-{escape(str(k))}="{escape(str(v))}"' for k, v in attrs.items())


def _cell(c: Cell, first: bool) -> str:
    tag = "th" if c.header else "td"
    cls = ["label"] if first else []
    if c.attrs.get("significant") == "no":
        cls.append("not-significant")
    cls_attr = f' class="{" ".join(cls)}"' if cls else ""
    return f"<{tag}{cls_attr}{_attrs(c.attrs)}>{escape(c.text)}</{tag}>"


def _table(t: Table) -> str:
    label = ' class="label"'
    head = "".join(f"<th{label if i == 0 else ''}>{escape(c)}</th>" for i, c in enumerate(t.columns))
    body = "\n".join("<tr>" + "".join(_cell(c, i == 0) for i, c in enumerate(row)) + "</tr>"
                     for row in t.rows)
    return (f'<table class="{escape(t.kind)}" data-kind="{escape(t.kind)}"{_attrs(t.attrs)}>'
            f"<caption>{escape(t.caption)}</caption>\n<thead><tr>{head}</tr></thead>\n"
            f"<tbody>\n{body}\n</tbody></table>")


def _figure(f: Figure) -> str:
    data = base64.b64encode(f.png).decode("ascii")
    return (f'<figure data-kind="{escape(f.kind)}" data-name="{escape(f.name)}"{_attrs(f.attrs)}>'
            f'<img alt="{escape(f.caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{escape(f.caption)}</figcaption></figure>")


def _block(b) -> str:
    if isinstance(b, Table):
        return _table(b)
    if isinstance(b, Figure):
        return _figure(b)
    if isinstance(b, Paragraph):
        return f"<p>{escape(b.text)}</p>"
    if isinstance(b, Warnings):
        items = "".join(f"<li>{escape(i)}</li>" for i in b.items)
        return f'<div class="warnings" role="alert"><h3>{escape(b.title)}</h3><ul>{items}</ul></div>'
    if isinstance(b, Section):
        return _section(b)
    raise TypeError(f"unknown block {type(b).__name__}")


def _section(s: Section) -> str:
    h = min(6, s.level)
    inner = "\n".join(_block(b) for b in s.blocks)
    return (f'<section id="{escape(s.id)}"{_attrs(s.attrs)}>\n<h{h}>{escape(s.title)}</h{h}>\n'
            f"{inner}\n</section>")


def render(doc: Document) -> str:
    intro = "".join(f"<p>{escape(p)}</p>" for p in doc.intro)
    toc = "".join(f'<li><a href="#{escape(s.id)}">{escape(s.title)}</a></li>' for s in doc.sections)
    body = "\n".join(_section(s) for s in doc.sections)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{escape(doc.title)}</title><style>{_CSS}</style></head>\n<body>\n"
            f"<h1>{escape(doc.title)}</h1>\n{intro}\n<nav><ul>{toc}</ul></nav>\n{body}\n</body></html>\n")
