"""The report as a tree of plain blocks, rendered by both the HTML and Markdown writers.

Building the content once and writing it twice keeps the two documents identical in
substance. Cells and sections carry `attrs` (data-* attributes in HTML) so a program
can find a figure without parsing its text.
"""

from dataclasses import dataclass, field


@dataclass
class Cell:
    text: str
    attrs: dict = field(default_factory=dict)
    header: bool = False


@dataclass
class Table:
    caption: str
    columns: list[str]
    rows: list[list[Cell]]
    kind: str = ""               # css class / data-kind: measured, compare, whatif, ...
    attrs: dict = field(default_factory=dict)


@dataclass
class Figure:
    name: str                    # file stem of the PNG beside report.md
    png: bytes
    caption: str
    kind: str = ""
    attrs: dict = field(default_factory=dict)


@dataclass
class Paragraph:
    text: str


@dataclass
class Warnings:
    items: list[str]
    title: str = "Figures that are not directly comparable"


@dataclass
class Section:
    id: str
    title: str
    blocks: list = field(default_factory=list)
    attrs: dict = field(default_factory=dict)
    level: int = 2

    def add(self, block):
        self.blocks.append(block)
        return block


@dataclass
class Document:
    title: str
    intro: list[str]
    sections: list[Section] = field(default_factory=list)

    def figures(self):
        def walk(blocks):
            for b in blocks:
                if isinstance(b, Figure):
                    yield b
                elif isinstance(b, Section):
                    yield from walk(b.blocks)
        yield from walk(self.sections)
