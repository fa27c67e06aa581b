"""The report page: one self-contained HTML file (styles inline, images as data URIs) that opens offline."""

from __future__ import annotations

import base64
import json
from html import escape
from pathlib import Path

from clipforensics.core.errors import UserError
from clipforensics.core.io import write_text
from clipforensics.report.tables import Table, to_html

_IMAGE_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml",
               ".gif": "image/gif", ".webp": "image/webp"}

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:0.9em;margin:1em 0}
th,td{border:1px solid #ccc;padding:4px 8px;white-space:nowrap}
th{background:#f0f0f0}
tr.sub td{color:#555;font-size:0.95em}
tr.sub td:nth-child(2){padding-left:1.5em}
p.warning{background:#fff3cd;border-left:4px solid #e0a800;padding:6px 10px}
figure{margin:1.5em 0}
img{max-width:100%;height:auto;border:1px solid #ddd}
figcaption{color:#555;font-size:0.9em}
pre{background:#f7f7f7;padding:1em;overflow:auto;font-size:0.8em}
"""


def _image_figure(caption: str, path: Path) -> str:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"report: image {path} not found")
    mime = _IMAGE_MIME.get(path.suffix.lower(), "image/png")
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    text = escape(caption)
    return (f'<figure><img src="data:{mime};base64,{data}" alt="{text}">'
            f"<figcaption>{text}</figcaption></figure>")


def write_html(out_path: Path, title: str, tables: list[Table], images: list[tuple[str, Path]],
               metrics_json: dict | None = None) -> Path:
    """One page: the tables in order, then the figures (`images` are (caption, path) pairs), then the JSON."""
    body = "\n".join(to_html(table) for table in tables)
    figures = "\n".join(_image_figure(caption, path) for caption, path in images)
    details = ""
    if metrics_json is not None:
        dumped = json.dumps(metrics_json, indent=2, sort_keys=True, default=str)
        details = f"<details><summary>Metrics (JSON)</summary><pre>{escape(dumped)}</pre></details>"
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{escape(title)}</title><style>{_STYLE}</style></head>\n"
            f"<body><h1>{escape(title)}</h1>\n{body}\n{figures}\n{details}\n</body></html>\n")
    out_path = Path(out_path)
    write_text(out_path, page)
    return out_path
