"""A report table as a paper-ready LaTeX table (booktabs) and as CSV, from the same formatted cells the page
shows, so a number pasted into a paper is the number in the report."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from clipforensics.core.io import write_text
from clipforensics.report.tables import SUB_ROW, Table

_LATEX_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                   "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                   "−": "$-$", "Δ": r"$\Delta$", "↳": r"$\hookrightarrow$", "–": "--", "≥": r"$\geq$"}


def latex_escape(text: str) -> str:
    """Text safe inside a LaTeX cell: specials escaped, the few non-ASCII signs the report uses spelled out."""
    return "".join(_LATEX_SPECIALS.get(ch, ch) for ch in str(text))


def to_latex(table: Table, caption: str = "", label: str = "") -> str:
    """A booktabs tabular (\\toprule, \\midrule, \\bottomrule), numeric columns right-aligned, in a table float
    with the caption and label when given; the note goes under it as a footnote-sized paragraph."""
    spec = "".join("r" if right else "l" for right in table.right)
    lines = [r"\begin{table}[t]", r"\centering", r"\small"]
    if caption:
        lines.append(rf"\caption{{{latex_escape(caption)}}}")
    if label:
        lines.append(rf"\label{{{label}}}")
    lines += [rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
              " & ".join(latex_escape(c) for c in table.columns) + r" \\", r"\midrule"]
    lines += [" & ".join(latex_escape(c) for c in row.cells) + r" \\" for row in table.rows]
    lines += [r"\bottomrule", r"\end{tabular}"]
    if table.note:
        lines.append(rf"\par\footnotesize {latex_escape(table.note)}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def to_csv(table: Table) -> str:
    """The header and the cells as shown (a breakdown row's arrow dropped)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(table.columns)
    for row in table.rows:
        writer.writerow([c[len(SUB_ROW):] if c.startswith(SUB_ROW) else c for c in row.cells])
    return buffer.getvalue()


def write_table_files(table: Table, out: Path, stem: str, caption: str = "") -> tuple[Path, Path]:
    """`stem`.csv and `stem`.tex in `out`; returns their paths (the page links them)."""
    csv_path, tex_path = Path(out) / f"{stem}.csv", Path(out) / f"{stem}.tex"
    write_text(csv_path, to_csv(table))
    write_text(tex_path, to_latex(table, caption, f"tab:{stem}"))
    return csv_path, tex_path
