"""The report page: one self-contained HTML file (styles inline, images as data URIs) that opens offline.

A page is a title, a lead (what it answers) and sections, each with a heading and an entry in the table of
contents. Blocks are HTML fragments made here: a table in its own scroll box (a wide table never widens the
page), a figure with links to its vector copy, a folded <details> block.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Iterable

from clipforensics.core.errors import UserError
from clipforensics.core.io import write_text
from clipforensics.report.tables import Table, to_html

_IMAGE_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml",
               ".gif": "image/gif", ".webp": "image/webp"}

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#222;line-height:1.4}
h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
nav.toc{background:#f7f7f7;border:1px solid #e3e3e3;padding:.5em 1.5em;display:inline-block}
nav.toc ol{margin:.3em 0;padding-left:1.2em}
div.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;font-size:0.9em;margin:1em 0}
th,td{border:1px solid #ccc;padding:4px 8px;white-space:nowrap}
th{background:#f0f0f0}
tr.sub td{color:#555;font-size:0.95em}
tr.sub td:nth-child(2){padding-left:1.5em}
p.warning{background:#fff3cd;border-left:4px solid #e0a800;padding:6px 10px}
p.lead{font-size:1.05em}
ul.reading{font-family:ui-monospace,monospace;font-size:.85em;list-style:none;padding-left:0}
figure{margin:1.5em 0}
img{max-width:100%;height:auto;border:1px solid #ddd}
figcaption{color:#555;font-size:0.9em}
details{margin:.8em 0}
details>summary{cursor:pointer;font-weight:600}
pre{background:#f7f7f7;padding:1em;overflow:auto;font-size:0.8em;white-space:pre}
"""


@dataclass(frozen=True)
class Section:
    """One headed part of the page: its title (also its table-of-contents entry) and its HTML blocks."""

    title: str
    blocks: tuple[str, ...]

    @property
    def anchor(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-") or "section"


def table_block(table: Table) -> str:
    """A table in its own horizontal scroll box, so a wide one scrolls inside the page instead of widening it."""
    return f'<div class="scroll">{to_html(table)}</div>'


def _href(path: Path, root: Path | None) -> str:
    """A link from report.html (in `root`) to a file written beside or below it."""
    return escape(Path(path).relative_to(root).as_posix() if root else Path(path).name)


def figure_block(caption: str, path: Path, links: Iterable[Path] = (), root: Path | None = None) -> str:
    """The image inlined as a data URI, captioned, with links to its other renderings (SVG beside the PNG)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"report: image {path} not found")
    mime = _IMAGE_MIME.get(path.suffix.lower(), "image/png")
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    text = escape(caption)
    extra = " ".join(f'<a href="{_href(p, root)}">{escape(Path(p).suffix.lstrip(".").upper())}</a>'
                     for p in links if Path(p).is_file())
    return (f'<figure><img src="data:{mime};base64,{data}" alt="{text}">'
            f"<figcaption>{text}{' · ' + extra if extra else ''}</figcaption></figure>")


def details_block(summary: str, blocks: Iterable[str], open_: bool = False) -> str:
    """Blocks folded under a one-line summary (opened on load with `open_`)."""
    return (f"<details{' open' if open_ else ''}><summary>{escape(summary)}</summary>\n"
            + "\n".join(blocks) + "\n</details>")


def paragraph(text: str, css: str = "") -> str:
    return f'<p{f" class={chr(34)}{css}{chr(34)}" if css else ""}>{escape(text)}</p>'


def lines_block(lines: Iterable[str]) -> str:
    """Preformatted reading lines as a list (each wraps inside the page, unlike a <pre>)."""
    return '<ul class="reading">' + "".join(f"<li>{escape(line)}</li>" for line in lines) + "</ul>"


def links_block(label: str, files: Iterable[Path], root: Path | None = None) -> str:
    """'label: a.csv · a.tex': links to files written beside (or below) report.html."""
    found = [Path(p) for p in files if Path(p).is_file()]
    if not found:
        return ""
    return f"<p>{escape(label)}: " + " · ".join(f'<a href="{_href(p, root)}">{escape(p.name)}</a>'
                                                  for p in found) + "</p>"


def metrics_block(metrics_json: dict) -> str:
    dumped = json.dumps(metrics_json, indent=2, sort_keys=True, default=str)
    return f"<details><summary>Metrics (JSON)</summary><pre>{escape(dumped)}</pre></details>"


def _toc(sections: list[Section]) -> str:
    items = "".join(f'<li><a href="#{s.anchor}">{escape(s.title)}</a></li>' for s in sections)
    return f'<nav class="toc"><strong>Contents</strong><ol>{items}</ol></nav>'


def write_page(out_path: Path, title: str, sections: list[Section], lead: str = "") -> Path:
    """The page: title, lead, table of contents (from two sections on), then each section under its heading."""
    body = [paragraph(lead, "lead")] if lead else []
    if len(sections) > 1:
        body.append(_toc(sections))
    for section in sections:
        body.append(f'<section id="{section.anchor}"><h2>{escape(section.title)}</h2>\n'
                    + "\n".join(b for b in section.blocks if b) + "\n</section>")
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title><style>{_STYLE}</style></head>\n"
            f"<body><h1>{escape(title)}</h1>\n" + "\n".join(body) + "\n</body></html>\n")
    out_path = Path(out_path)
    write_text(out_path, page)
    return out_path


def write_html(out_path: Path, title: str, tables: list[Table], images: list[tuple[str, Path]],
               metrics_json: dict | None = None) -> Path:
    """A plain page (robustness and tests use it): the tables in order, then the figures (each linked to its SVG
    where one was drawn beside it), then the JSON."""
    blocks = [*(table_block(t) for t in tables),
              *(figure_block(c, p, [Path(p).with_suffix(".svg")]) for c, p in images)]
    if metrics_json is not None:
        blocks.append(metrics_block(metrics_json))
    return write_page(out_path, title, [Section("Results", tuple(blocks))])
