"""Report rendering on small synthetic runs: table numbers, figures, error analysis, the HTML page."""

from __future__ import annotations

import copy
import re
from html import unescape
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.metrics import roc_curve

from clipforensics.core.errors import UserError
from clipforensics.measure import curve, metrics
from clipforensics.measure.result import RunResult
from clipforensics.report import errors, figures, html, tables
from clipforensics.report.robustness import robustness_table

MANIPS = ("Deepfakes", "Face2Face", "FaceSwap")
N_REAL, N_FAKE_PER_MANIP, N_FRAMES = 10, 4, 3
THRESHOLD = 0.5
N_BOOT = 50


def write_frames(root: Path, table: pd.DataFrame) -> None:
    """A small solid-colour PNG for every frame path, so the error grid has real thumbnails."""
    for i, rel in enumerate(table["path"]):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (24, 24), ((37 * i) % 256, (91 * i) % 256, 128)).save(path)


def synthetic_scores(seed: int, separation: float) -> pd.DataFrame:
    """Test rows with a per-video random effect; real video r3 has one very confident false positive."""
    rng = np.random.default_rng(seed)
    videos = [(f"r{v}", 0, "real", "real") for v in range(N_REAL)]
    videos += [(f"{m}_{v}", 1, m, m) for m in MANIPS for v in range(N_FAKE_PER_MANIP)]
    rows = []
    for video, label, manip, folder in videos:
        logits = rng.normal(separation * (label - 0.5), 1.0) + rng.normal(0, 0.7, N_FRAMES)
        for i, logit in enumerate(logits):
            rows.append({"path": f"{folder}/{video}/{i}.png", "video": video, "manipulation": manip,
                         "label": label, "split": "test", "score": float(1 / (1 + np.exp(-logit)))})
    table = pd.DataFrame(rows)
    table.loc[table["path"] == "real/r3/0.png", "score"] = 0.995
    return table


def make_run(name: str, scores: pd.DataFrame, data_root: Path | None) -> RunResult:
    kw = {"threshold": THRESHOLD, "n_boot": N_BOOT, "seed": 0}
    return RunResult(name=name, scores=scores, threshold=THRESHOLD, threshold_note="fixed 0.5 for the test",
                     metrics=metrics.evaluate_split(scores, **kw),
                     per_manipulation=metrics.per_manipulation(scores, **kw),
                     data_root=None if data_root is None else str(data_root))


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("frames")
    write_frames(root, synthetic_scores(0, 2.0))
    return root


@pytest.fixture(scope="module")
def runs(data_root) -> list[RunResult]:
    return [make_run("logreg", synthetic_scores(0, 2.0), data_root),
            make_run("zeroshot-v2", synthetic_scores(1, 0.8), data_root)]


def markdown_table(runs: list[RunResult], **kw) -> str:
    return tables.to_markdown(tables.results_table(runs, **kw))


def table_rows(markdown: str) -> list[list[str]]:
    """Body rows of the pipe table (header and separator dropped)."""
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]


def col(header: str) -> int:
    """Where a column is in the results table (the registered metrics come before the decision columns)."""
    return tables.result_columns().index(header)


def assert_png(path: Path, min_px: int = 200) -> None:
    assert path.is_file() and path.stat().st_size > 5_000
    with Image.open(path) as img:
        assert img.format == "PNG"
        assert min(img.size) >= min_px
        img.verify()
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")], "temporary file left behind"


# ---------------------------------------------------------------------------- markdown table

def test_table_has_a_row_per_run_and_manipulation_with_the_metric_values(runs):
    rows = table_rows(markdown_table(runs))
    assert len(rows) == len(runs) * (1 + len(MANIPS))
    for r, run in enumerate(runs):
        block = rows[r * 4:(r + 1) * 4]
        top = block[0]
        frame, video = run.metrics["frame"], run.metrics["video"]
        assert top[:2] == [run.name, "all"]
        lo, hi = frame["auc_ci"]
        assert top[2] == f"{frame['auc']:.3f} [{lo:.2f}, {hi:.2f}]"
        assert top[3] == f"{frame['eer']:.3f}" and top[4] == f"{frame['ap']:.3f}"
        assert top[col("video AUC [95% CI]")].startswith(f"{video['auc']:.3f} [")
        assert top[col("acc"):col("bal. acc") + 1] == [f"{frame['accuracy']:.3f}", f"{frame['f1']:.3f}", f"{frame['balanced_accuracy']:.3f}"]
        assert top[col("n videos real/fake")] == f"{N_REAL}/{N_FAKE_PER_MANIP * len(MANIPS)}"
        for row, manip in zip(block[1:], MANIPS):
            expected = run.per_manipulation[manip]["frame"]["auc"]
            assert row[0] == "" and row[1] == f"↳ {manip}"
            assert row[2].startswith(f"{expected:.3f} [")
            assert row[col("n videos real/fake")] == f"{N_REAL}/{N_FAKE_PER_MANIP}"


def test_table_has_partial_auc_columns_at_both_levels(runs):
    top = table_rows(markdown_table(runs))[0]
    for level in ("frame", "video"):
        block = runs[0].metrics[level]
        lo, hi = block["pauc01_ci"]
        assert top[col(f"{level} pAUC@0.1 [95% CI]")] == f"{block['pauc01']:.3f} [{lo:.2f}, {hi:.2f}]"
    assert "Higher is better: AUC, AP, pAUC@0.1. Lower is better: EER." in markdown_table(runs)


def test_robustness_table_shows_the_metrics_its_rows_carry():
    old = {"run": "r", "copy": "clean", "frame_auc": 0.9, "frame_auc_ci": [0.8, 0.95], "video_auc": 0.91,
           "video_auc_ci": None}
    assert robustness_table([old]).columns == ("run", "test copy", "frame AUC [95% CI]", "video AUC [95% CI]")
    new = {**old, "frame_pauc01": 0.7, "frame_pauc01_ci": [0.6, 0.8], "video_pauc01": 0.75, "video_pauc01_ci": None}
    table = robustness_table([new])
    assert table.columns[2:] == ("frame AUC [95% CI]", "frame pAUC@0.1 [95% CI]", "video AUC [95% CI]",
                                 "video pAUC@0.1 [95% CI]")
    assert table.rows[0].cells[2:] == ("0.900 [0.80, 0.95]", "0.700 [0.60, 0.80]", "0.910", "0.750")


def test_table_footnotes_and_wide_interval_warning(runs):
    text = markdown_table(runs)
    for run in runs:
        assert f"- {run.name}: threshold 0.5 (fixed 0.5 for the test)" in text
    assert "Warning: 8 of 8 rows have fewer than 30 test videos in a class (fewest: 10 real, 4 fake)" in text
    assert "intervals are wide" in text

    big = copy.deepcopy(runs[0])
    big.per_manipulation = {}
    big.metrics["video"].update(n_real=40, n_fake=30)
    assert "intervals are wide" not in markdown_table([big])


def test_table_without_intervals_and_with_video_decisions(runs):
    scores = runs[0].scores
    run = copy.deepcopy(runs[0])
    run.metrics = metrics.evaluate_split(scores, threshold=THRESHOLD, n_boot=0)
    run.per_manipulation = {}
    top = table_rows(markdown_table([run], decision_level="video"))[0]
    assert top[2] == f"{run.metrics['frame']['auc']:.3f}"
    assert top[col("acc")] == f"{run.metrics['video']['accuracy']:.3f}"
    with pytest.raises(UserError):
        markdown_table([run], decision_level="clip")
    with pytest.raises(UserError):
        markdown_table([])


def test_markdown_and_html_render_the_same_rows(runs):
    odd = copy.deepcopy(runs[0])
    odd.name = "a|b\nc"
    table = tables.results_table([odd, runs[1]], decision_level="video")
    md_rows = [[c.replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip()[2:-2])]
               for line in tables.to_markdown(table).splitlines() if line.startswith("|")]
    html_rows = [[unescape(c) for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", tr)]
                 for tr in re.findall(r"<tr.*?</tr>", tables.to_html(table))]
    assert [[c.strip() for c in row] for row in md_rows[:1] + md_rows[2:]] == html_rows
    assert html_rows[1][0] == "a|b c" and len(html_rows) == 1 + 2 * (1 + len(MANIPS))


# ---------------------------------------------------------------------------- figures

def test_roc_and_confusion_figures_are_valid_pngs(runs, tmp_path):
    assert_png(figures.plot_roc(runs, tmp_path / "roc_frame.png"))
    assert_png(figures.plot_roc(runs, tmp_path / "roc_video.png", level="video", video_agg="max"))
    assert_png(figures.plot_confusion(runs[1], tmp_path / "confusion.png"))
    with pytest.raises(UserError):
        figures.plot_roc(runs, tmp_path / "bad.png", level="clip")


def test_roc_curve_encloses_the_reported_auc():
    labels = np.array([0, 0, 1, 1, 0, 1, 1, 0, 1, 0], dtype=float)
    scores = np.round(np.linspace(0.05, 0.95, 10)[::-1] * np.array([1, 1, 1, 0.2, 1, 1, 1, 0.3, 1, 1]), 1)
    fpr, tpr = curve.roc_curve(labels, scores)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1)
    assert np.trapezoid(tpr, fpr) == pytest.approx(metrics.roc_auc(labels, scores))
    sk_fpr, sk_tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)


def test_matrix_heatmap_from_long_table(tmp_path):
    pairs = [(tr, te) for tr in MANIPS for te in MANIPS if (tr, te) != ("FaceSwap", "Deepfakes")]
    long = pd.DataFrame([{"train": tr, "test": te, "frame_auc": 0.99 if tr == te else 0.6 + 0.05 * i,
                          "video_auc": 0.7} for i, (tr, te) in enumerate(pairs)])
    assert_png(figures.plot_matrix(long, tmp_path / "matrix.png"), min_px=150)
    assert_png(figures.plot_matrix(long, tmp_path / "matrix_video.png", value="video_auc"), min_px=150)
    wide = figures.matrix_grid(long, "frame_auc")
    assert list(wide.index) == list(MANIPS) and list(wide.columns) == list(MANIPS)
    assert wide.loc["FaceSwap", "Face2Face"] == pytest.approx(0.6 + 0.05 * pairs.index(("FaceSwap", "Face2Face")))
    assert np.isnan(wide.loc["FaceSwap", "Deepfakes"])
    with pytest.raises(UserError, match="duplicate"):
        figures.plot_matrix(pd.concat([long, long.head(1)]), tmp_path / "dup.png")
    with pytest.raises(UserError, match="lacks"):
        figures.plot_matrix(long, tmp_path / "nope.png", value="ap")


# ---------------------------------------------------------------------------- error analysis

def expected_video_errors(scores: pd.DataFrame, threshold: float) -> pd.Series:
    """Error rate per video computed independently: a frame is wrong when its decision != its label."""
    predicted_fake = scores["score"] >= threshold
    wrong = np.where(scores["label"] == 1, ~predicted_fake, predicted_fake)
    return pd.Series(wrong, index=scores.index).groupby(scores["video"]).mean()


def test_error_csv_ranks_videos_by_error_rate(runs, tmp_path):
    run = runs[1]
    out = errors.error_analysis(run, tmp_path, top_k=6)
    csv = pd.read_csv(out["csv"])
    assert out["csv"] == tmp_path / "errors_zeroshot-v2.csv"
    assert list(csv.columns) == ["video", "manipulation", "label", "n_frames", "error_rate", "mean_score"]
    expected = expected_video_errors(run.scores, run.threshold)
    expected = expected[expected > 0].sort_values(ascending=False)
    assert len(csv) == min(6, len(expected))
    assert csv["error_rate"].tolist() == pytest.approx(expected.head(len(csv)).tolist())
    assert csv["error_rate"].tolist() == pytest.approx(expected.loc[csv["video"]].tolist())
    means = run.scores.groupby("video")["score"].mean()
    assert csv["mean_score"].tolist() == pytest.approx(means.loc[csv["video"]].tolist())
    assert (csv["n_frames"] == N_FRAMES).all()
    assert [r["video"] for r in out["top_videos"]] == csv["video"].tolist()


def test_error_grid_shows_the_most_confident_mistakes(runs, tmp_path):
    run = runs[0]
    out = errors.error_analysis(run, tmp_path, grid=4)
    assert_png(out["png"], min_px=150)
    real, fake = run.scores[run.scores["label"] == 0], run.scores[run.scores["label"] == 1]
    top_real = real.loc[real["score"].idxmax()]
    first = out["false_positives"][0]
    assert (first["path"], first["video"], first["loaded"]) == (top_real["path"], "r3", True)
    assert first["score"] == pytest.approx(0.995)
    assert len(out["false_positives"]) <= 4 and len(out["false_negatives"]) <= 4
    assert all(r["score"] >= THRESHOLD and r["label"] == 0 for r in out["false_positives"])
    assert all(r["score"] < THRESHOLD and r["label"] == 1 for r in out["false_negatives"])
    if out["false_negatives"]:
        assert out["false_negatives"][0]["score"] == pytest.approx(fake["score"].min())


def test_missing_or_corrupt_images_become_grey_tiles(runs, tmp_path):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"not a png at all")
    scores = runs[0].scores.copy()
    top = scores[scores["label"] == 0]["score"].nlargest(2).index
    scores.loc[top, "score"] = [0.99, 0.98]
    scores.loc[top, "path"] = ["real/gone/0.png", str(corrupt)]
    run = copy.deepcopy(runs[0])
    run.scores = scores
    out = errors.error_analysis(run, tmp_path / "out", grid=3)
    assert_png(out["png"], min_px=150)
    assert [r["loaded"] for r in out["false_positives"][:2]] == [False, False]


def test_grid_reads_absolute_paths_without_a_data_root(runs, data_root, tmp_path):
    run = copy.deepcopy(runs[0])
    run.scores = run.scores.assign(path=[str(data_root / p) for p in run.scores["path"]])
    run.data_root = None
    run.name = "abs/paths run"
    out = errors.error_analysis(run, tmp_path, grid=2)
    assert out["png"].name == "errors_abs_paths_run.png"
    assert all(r["loaded"] for r in out["false_positives"] + out["false_negatives"])


def test_error_analysis_without_mistakes_still_writes_both_files(runs, tmp_path):
    run = copy.deepcopy(runs[0])
    run.scores = run.scores.assign(score=run.scores["label"] * 0.8 + 0.1)
    out = errors.error_analysis(run, tmp_path)
    assert pd.read_csv(out["csv"]).empty and out["top_videos"] == []
    assert out["png"].is_file() and out["false_positives"] == []


# ---------------------------------------------------------------------------- HTML

EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.IGNORECASE)


def test_html_is_self_contained_and_escaped(runs, tmp_path):
    evil = copy.deepcopy(runs[0])
    evil.name = "<script>alert(1)</script>|x"
    table = tables.results_table([evil, runs[1]])
    images = [("ROC (frames)", figures.plot_roc(runs, tmp_path / "roc.png")),
              ("Confusion <b>", figures.plot_confusion(runs[0], tmp_path / "conf.png"))]
    page = html.write_html(tmp_path / "report.html", "Cross-manipulation & results", [table], images,
                             metrics_json={"logreg": runs[0].metrics})
    text = page.read_text(encoding="utf-8")
    assert text.count("data:image/png;base64,") == len(images)
    assert not EXTERNAL.search(text)
    assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;|x" in text
    assert "Confusion &lt;b&gt;" in text and "Cross-manipulation &amp; results" in text
    assert text.count("<tr") == 1 + len(runs) * (1 + len(MANIPS))
    assert f"<td style=\"text-align:right\">{runs[1].metrics['frame']['auc']:.3f} [" in text
    assert "<details>" in text and '&quot;auc&quot;' in text
    assert 'class="warning"' in text


def test_html_accepts_a_dataframe(tmp_path):
    frame = pd.DataFrame({"run": ["<a>"], "auc": [0.91234]})
    text = html.write_html(tmp_path / "r.html", "t", [tables.frame_table(frame)], []).read_text()
    assert "&lt;a&gt;" in text and "0.912" in text and "<details>" not in text
    with pytest.raises(UserError, match="not found"):
        html.write_html(tmp_path / "r2.html", "t", [], [("gone", tmp_path / "gone.png")])


# ---------------------------------------------------------------------------- what the backbone saw (issue 22)

def test_table_marks_cells_the_backbone_was_tuned_on(runs):
    from clipforensics.data.provenance import TunedTower

    tower = TunedTower(("FaceSwap",), "runs/x")
    table = tables.results_table(runs, towers={"logreg": tower})
    rows = table_rows(tables.to_markdown(table))
    assert rows[0][1] == "all (backbone saw FaceSwap)" and rows[3][1] == "↳ FaceSwap (backbone saw)"
    assert rows[1][1] == "↳ Deepfakes" and rows[4][1] == "all", "only the tuned run's cells are marked"
    assert any(item.startswith("logreg: backbone tuned on FaceSwap (LoRA run runs/x)") for item in table.items)
    elsewhere = tables.results_table(runs, towers={"logreg": TunedTower(("FaceSwap",), "", here=False)})
    assert table_rows(tables.to_markdown(elsewhere))[3][1] == "↳ FaceSwap", "another data set's FaceSwap: unseen"


def test_provenance_records_what_a_lora_caches_tower_was_tuned_on(tmp_path):
    import h5py

    from clipforensics.report.provenance import cache_record, provenance_table

    def cache(name: str, videos: list[str], lora: bool) -> str:
        path = tmp_path / name
        with h5py.File(path, "w") as h5:
            h5.create_dataset("image_embeddings", data=np.zeros((len(videos), 2), np.float16))
            h5.create_dataset("video", data=np.array(videos, dtype=object), dtype=h5py.string_dtype())
            h5.attrs["schema_version"] = 1
            if lora:
                h5.attrs["lora_train_videos"] = '["FaceSwap/000_003", "Real_youtube/000"]'
                h5.attrs["lora_protocol"] = '{"train_fakes": ["FaceSwap"]}'
                h5.attrs["lora_run"] = "runs/x"
        return str(path)

    tuned = cache_record(cache("lora.h5", ["FaceSwap/000_003", "Real_youtube/000", "Deepfakes/001_002"], True))
    assert tuned["tuned_on"] == {"manipulations": ["FaceSwap"], "run": "runs/x", "here": True}
    other = cache_record(cache("other-lora.h5", ["Celeb-real/id0_0000"], True))
    assert other["tuned_on"]["here"] is False
    assert "tuned_on" not in cache_record(cache("base.h5", ["Real_youtube/000"], False))
    rows = provenance_table({"caches": [tuned, other], "splits": {}, "code_version": "v", "date": "d"}).rows
    backbone = [row.cells[1] for row in rows if row.cells[0] == "backbone"]
    assert backbone == ["backbone tuned on FaceSwap (LoRA run runs/x)",
                        "backbone tuned on FaceSwap of another data set (LoRA run runs/x)"]
