"""Tables of the method comparison (studies/methods.py): each fine-tuning method's trainable parameters and video
AUC per manipulation, and its paired differences against the baseline method. Cells are formatted once, here."""

from __future__ import annotations

from typing import Any, Mapping

from clipforensics.data.provenance import IN_DOMAIN
from clipforensics.report.comparisons import delong_cell
from clipforensics.report.tables import Row, Table, ci_cell, num, one_line


def count(value: Any) -> str:
    return "–" if value is None else f"{int(value):,}"


def share(value: Any) -> str:
    return "–" if value is None else f"{float(value):.3f} %"


def methods_table(rows: list[dict[str, Any]], runs: Mapping[str, Mapping[str, Any]]) -> Table:
    """One row per run: method, trainable parameters (method, head, method's share of the tower), then video AUC
    [95% CI] in-domain and on each unseen manipulation."""
    cells = list(dict.fromkeys((r["role"], r["manipulation"]) for r in rows))
    cells.sort(key=lambda rm: rm[0] != IN_DOMAIN)
    found = {(r["run"], r["manipulation"]): r for r in rows}
    lines = []
    for name, run in runs.items():
        p = run["parameters"]
        aucs = (found.get((name, m)) for _, m in cells)
        lines.append(Row((one_line(name), run["method"], count(p["method"]), count(p["head"]),
                          share(p["share_of_tower"]), str(run.get("best_epoch", "–")),
                          *(ci_cell(num(r["video_auc"]), r["video_auc_ci"]) if r else "–" for r in aucs))))
    return Table(columns=("run", "method", "trainable (method)", "trainable (head)", "share of tower", "epoch",
                          *(f"{role} {m}: video AUC [95% CI]" for role, m in cells)),
                 rows=tuple(lines), right=(False, False, True, True, True, True) + (True,) * len(cells),
                 note="Each manipulation's fake test videos against all real test videos; intervals resample test "
                      "videos (bootstrap). Trainable parameters as each run's lora.json counts them; the share is of "
                      "the image tower's parameters. Epoch: the one the run selected (0: the untrained tower). "
                      "Higher AUC is better; 0.5 is chance.")


def differences_table(diffs: list[dict[str, Any]], baseline: str) -> Table:
    """One row per run and manipulation: its video AUC minus the baseline run's, paired, with DeLong's test."""
    lines = tuple(Row((one_line(d["run"]), d["method"], f"{d['role']} {d['manipulation']}",
                       ci_cell(num(d["diff"]), d["diff_ci"]),
                       "yes" if d["distinguishable"] else "no" if d["distinguishable"] is not None else "–",
                       delong_cell(d["delong"]))) for d in diffs)
    return Table(columns=("run", "method", "test manipulation", f"Δ video AUC vs {baseline} [95% CI]",
                          "CI excludes 0", "DeLong (video)"),
                 rows=lines, right=(False, False, False, True, False, True),
                 note=f"Paired on the same test videos: each bootstrap resample draws the same videos for the run and "
                      f"the {baseline} run; DeLong's test on the video scores. Positive: better than {baseline}.")
