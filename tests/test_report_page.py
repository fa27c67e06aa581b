"""The report page's new parts: the summary table, Holm-adjusted comparisons against a reference, LaTeX/CSV,
the matrix table, the figures' numbers (PCA, reliability, threshold sweep), provenance and the page layout."""

from __future__ import annotations

import csv
import io
import itertools

import numpy as np
import pandas as pd
import pytest
from sklearn.decomposition import PCA

from clipforensics.core.errors import UserError
from clipforensics.report import comparisons, curves, embedding, html, latex, matrix, provenance, summary
from clipforensics.report.tables import Row, Table


def _run(trained, cells, tower=None, name="r"):
    """A metrics.json run: per-manipulation video/frame AUC with intervals, trained on `trained`."""
    per = {m: {lvl: {"auc": auc, "auc_ci": [auc - 0.1, auc + 0.1]} for lvl in ("video", "frame")}
           for m, auc in cells.items()}
    source = {"protocol": {"train_fakes": list(trained)}, "name": name}
    if tower:
        source.update(scorer="lora")
    return {"per_manipulation": per, "source": source,
            "test": {lvl: {"auc": 0.6, "auc_ci": [0.5, 0.7]} for lvl in ("video", "frame")}}


def test_summary_row_means_only_unseen_and_drops_from_in_domain():
    metrics = {"runs": {"head": _run(["A"], {"A": 0.9, "B": 0.6, "C": 0.5}),
                        "lora": _run(["A"], {"A": 0.8, "B": 0.7}, tower=True)}}
    head, lora = summary.summary_rows(metrics)
    assert head.in_domain_auc()[0] == 0.9 and head.mean_unseen() == pytest.approx((0.6 + 0.5) / 2)
    assert head.drop() == pytest.approx((0.6 + 0.5) / 2 - 0.9)
    assert lora.others == {"B": ("unseen", (0.7, pytest.approx(0.6), pytest.approx(0.8)))}
    table = summary.summary_table([head, lora])
    assert table.columns[:3] == ("run", "trained on", "in-domain video AUC") and table.columns[-2:] == (
        "mean unseen", "drop")
    assert table.rows[0].cells[2] == "0.900 [0.80, 1.00]" and table.rows[0].cells[-1] == "-0.350"


def test_summary_marks_backbone_seen_cells_and_leaves_them_out_of_the_mean():
    metrics = {"provenance": {"caches": [{"path": "/c.h5", "tuned_on": {"manipulations": ["B"], "run": "x",
                                                                           "here": True}}]},
               "runs": {"head": {**_run(["A"], {"A": 0.9, "B": 0.95, "C": 0.5}),
                                 "source": {"protocol": {"train_fakes": ["A"]}, "cache": "/c.h5"}}}}
    (row,) = summary.summary_rows(metrics)
    assert row.others["B"][0] == "backbone-seen" and row.mean_unseen() == 0.5
    cells = dict(zip(summary.summary_table([row]).columns, summary.summary_table([row]).rows[0].cells))
    assert cells["B"].endswith(summary.SEEN_MARK)


def test_holm_matches_the_step_down_definition():
    p = [0.01, 0.04, 0.03, 0.005, None]
    got = comparisons.holm(p)
    defined = [x for x in p if x is not None]
    order = sorted(defined)
    m = len(defined)
    expected = {}
    for i, x in enumerate(order):  # adjusted p_(i) = max_{j <= i} min(1, (m - j) p_(j))
        expected[x] = max(min(1.0, (m - j) * order[j]) for j in range(i + 1))
    assert got[:4] == [pytest.approx(expected[x]) for x in p[:4]] and got[4] is None
    assert got[:4] == [pytest.approx(v) for v in (0.03, 0.06, 0.06, 0.02)]


def _pair(a, b, diff, p):
    level = {"diff": diff, "diff_ci": [diff - 0.1, diff + 0.2], "distinguishable": False}
    return {"a": a, "b": b, "frame": dict(level), "video": {**level, "delong": {"z": diff * 10, "p": p,
                                                                                "diff": diff}}}


def test_against_reference_orients_each_pair_and_adjusts_over_that_family_only():
    names = ["x", "y", "z"]
    pairs = [_pair(a, b, 0.1 * (i + 1), 0.01 * (i + 1)) for i, (a, b) in enumerate(itertools.combinations(names, 2))]
    compared = comparisons.against_reference(pairs, "y")
    assert [(p["a"], p["b"]) for p in compared] == [("x", "y"), ("z", "y")]
    flipped = compared[1]["video"]  # pair (y, z) read as z - y
    assert flipped["diff"] == pytest.approx(-0.3) and flipped["diff_ci"] == [pytest.approx(-0.5), pytest.approx(-0.2)]
    assert flipped["delong"]["z"] == pytest.approx(-3.0)
    assert [p["p_holm"] for p in compared] == comparisons.holm([0.01, 0.03])
    assert len(comparisons.against_reference(pairs, "y", all_pairs=True)) == 3
    with pytest.raises(UserError, match="--compare-to"):
        comparisons.against_reference(pairs, "nope")
    table = comparisons.comparison_table(compared, "y")
    assert table.columns[-1] == "Holm p (video)" and "2 comparisons with y" in table.note


def test_latex_is_booktabs_with_escaped_cells_and_csv_has_the_same_cells(tmp_path):
    table = Table(columns=("run", "AUC [95% CI]"), right=(False, True),
                  rows=(Row(("a_b & c", "0.912 [0.85, 0.96]")), Row(("↳ x", "–"), sub=True)), note="50% of #")
    tex = latex.to_latex(table, "Main table", "tab:main")
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex and r"\begin{tabular}{lr}" in tex
    assert r"a\_b \& c & 0.912 [0.85, 0.96] \\" in tex and r"AUC [95\% CI]" in tex and r"50\% of \#" in tex
    assert list(csv.reader(io.StringIO(latex.to_csv(table)))) == [["run", "AUC [95% CI]"],
                                                                  ["a_b & c", "0.912 [0.85, 0.96]"], ["x", "–"]]
    csv_path, tex_path = latex.write_table_files(table, tmp_path, "main")
    assert csv_path.read_text(encoding="utf-8") == latex.to_csv(table)
    assert tex_path.read_text(encoding="utf-8") == latex.to_latex(table, "", "tab:main")


def test_matrix_table_has_intervals_and_marks_in_domain_cells():
    rows = [{"train": "A", "test": t, "video_auc": v, "video_auc_lo": v - 0.1, "video_auc_hi": v + 0.1,
             "in_domain": t == "A", "backbone": None} for t, v in (("A", 0.9), ("B", 0.4))]
    table = matrix.matrix_table(rows)
    assert table.columns == ("trained on \\ tested on", "A", "B")
    assert table.rows[0].cells == ("A", "0.900 [0.80, 1.00]" + matrix.IN_DOMAIN_MARK, "0.400 [0.30, 0.50]")


def test_pca_map_matches_scikit_learn_up_to_sign():
    x = np.random.default_rng(0).normal(size=(200, 8)) @ np.diag([5, 3, 1, 1, 1, 1, 1, 1])
    coords, share = embedding.pca_2d(x)
    ref = PCA(n_components=2).fit(x)
    expected = ref.transform(x)
    for k in range(2):
        assert np.allclose(np.abs(coords[:, k]), np.abs(expected[:, k]), atol=1e-8)
    assert np.allclose(share, ref.explained_variance_ratio_)


def test_reliability_bins_match_a_direct_count():
    rng = np.random.default_rng(1)
    scores = rng.uniform(size=500)
    labels = (rng.uniform(size=500) < scores).astype(int)
    mean, frac, count, scaled = curves.reliability(labels, scores, bins=5)
    edges = np.digitize(scores, [0.2, 0.4, 0.6, 0.8])
    assert not scaled and count.tolist() == [int((edges == b).sum()) for b in range(5)]
    assert np.allclose(frac, [labels[edges == b].mean() for b in range(5)])
    assert np.allclose(mean, [scores[edges == b].mean() for b in range(5)])
    assert curves.reliability(labels, scores * 4 - 2, bins=5)[3]  # margins, not probabilities: scaled


def test_threshold_sweep_counts_decisions_directly():
    labels = np.array([0, 0, 1, 1, 1])
    scores = np.array([0.1, 0.6, 0.4, 0.7, 0.9])
    sweep = curves.threshold_sweep(labels, scores, n=9)
    i = int(np.argmin(np.abs(sweep["threshold"] - 0.5)))
    t = sweep["threshold"][i]
    assert sweep["TPR (fakes caught)"][i] == np.mean(scores[labels == 1] >= t)
    assert sweep["TNR (reals passed)"][i] == np.mean(scores[labels == 0] < t)


def test_provenance_records_split_seed_split_file_and_package_versions():
    prov = provenance.provenance([], {"train_fakes": ["A"], "split_seed": 7, "split_file": "s.csv", "seed": 1}, [])
    assert prov["protocol"]["split_seed"] == 7 and prov["protocol"]["split_file"] == "s.csv"
    assert set(prov["packages"]) == {"torch", "open_clip", "peft", "scikit-learn", "numpy"}
    assert prov["packages"]["numpy"] == np.__version__
    rows = {r.cells[0]: r.cells[1] for r in provenance.provenance_table(prov).rows}
    assert "split_seed=7" in rows["protocol"] and f"numpy {np.__version__}" in rows["packages"]
    assert "split s.csv" in provenance.provenance_line(prov)


def test_page_has_headed_sections_a_contents_and_wide_tables_in_their_own_scroll_box(tmp_path):
    wide = Table(columns=tuple(f"column {i}" for i in range(40)), right=(False,) * 40,
                 rows=(Row(tuple("x" * 20 for _ in range(40))),))
    page = html.write_page(tmp_path / "r.html", "T", [
        html.Section("In-domain against unseen", (html.table_block(wide),)),
        html.Section("Per-run details", (html.details_block("run a", [html.paragraph("<b>")]),))], lead="lead")
    text = page.read_text(encoding="utf-8")
    assert '<a href="#in-domain-against-unseen">' in text and '<section id="per-run-details"><h2>' in text
    assert '<div class="scroll"><table>' in text and "div.scroll{overflow-x:auto" in text
    assert "<details><summary>run a</summary>" in text and "&lt;b&gt;" in text
    assert text.index("lead") < text.index("Contents") < text.index("<h2>In-domain")


def test_dataset_results_fold_into_their_run_as_unseen_columns():
    own = _run(["A"], {"A": 0.9, "B": 0.6})
    own["source"]["test_sets"] = [{"name": "other"}]
    other = {**_run(["A"], {"X": 0.55}), "source": {**own["source"]}}
    other["test"] = {lvl: {"auc": 0.55, "auc_ci": [0.45, 0.65]} for lvl in ("video", "frame")}
    (row,) = summary.summary_rows({"runs": {"h@main": own, "h@other": other}})
    assert row.run == "h" and row.others["other (data set)"] == ("unseen", (0.55, 0.45, 0.65))
    assert row.mean_unseen() == pytest.approx((0.6 + 0.55) / 2)


def test_matrix_heatmap_scale_is_centred_on_chance(tmp_path, monkeypatch):
    seen = {}
    from clipforensics.report import figures

    original = figures.Axes.imshow

    def spy(self, data, **kw):
        seen.update(kw)
        return original(self, data, **kw)

    monkeypatch.setattr(figures.Axes, "imshow", spy)
    rows = pd.DataFrame({"train": ["A", "A"], "test": ["A", "B"], "video_auc": [0.9, 0.2], "in_domain": [True, False]})
    png = figures.plot_matrix(rows, tmp_path / "m.png", "video_auc", svg=True)
    norm = seen["norm"]
    assert norm.vcenter == 0.5 and norm.vmin == 0.0 and norm.vmax == 1.0
    assert png.is_file() and png.with_suffix(".svg").read_text(encoding="utf-8").lstrip().startswith("<?xml")
