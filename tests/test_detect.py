"""detect.py: a head and a LoRA run rebuilt from their records score new inputs as the evaluator scored the cache;
videos go through prepare_frames' sampling and cropping; occlusion maps find a planted artifact; refusals are one line.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

import detect as detect_cli
import extract_features
import finetune_lora
import fit_heads
import prepare_frames
from clipforensics.detect.inputs import FAILED, OK, Item, Prepared
from clipforensics.detect.score import Batcher, score_stream
from clipforensics.measure.metrics import choose_threshold
from clipforensics.extract.encoders import load_model
from clipforensics.extract.settings import ModelSettings
from clipforensics.frames import detectors
from clipforensics.synthetic.write import generate
from conftest import TINY

PROTOCOL = ["--train-fakes", "FaceSwap", "--test-fakes", "FaceSwap,NeuralTextures"]
LORA = ["--epochs", "3", "--batch-size", "16", "--lr", "3e-3", "--rank", "8", "--alpha", "16", "--workers", "0",
        "--no-extract"]
QUIET = ["--workers", "0", "--batch-size", "16"]


def relevance_share(relevance: np.ndarray, region: np.ndarray) -> float:
    """Share of the positive relevance that falls inside `region` (a boolean mask of the same shape)."""
    positive = np.clip(relevance, 0, None)
    total = positive.sum()
    return float(positive[region].sum() / total) if total > 0 else 0.0



@pytest.fixture(scope="module")
def strong(tmp_path_factory) -> dict[str, Path]:
    """A generated set with strong local artifacts, its cache, a fitted logreg head and a LoRA run."""
    base = tmp_path_factory.mktemp("detect")
    root = generate(base / "ff", videos=48, frames=2, size=64, strength=3, manipulations=("FaceSwap", "NeuralTextures"))
    cache = base / "cache" / "strong.h5"
    assert extract_features.main(["--data-root", str(root), "--out", str(cache), *TINY]) == 0
    assert fit_heads.main(["--cache", str(cache), "--heads", "logreg", "--out", str(base / "runs" / "h"),
                           *PROTOCOL]) == 0
    assert finetune_lora.main(["--base-cache", str(cache), "--out", str(base / "runs" / "lora"), *LORA,
                               *PROTOCOL]) == 0
    return {"root": root, "cache": cache, "head": base / "runs" / "h" / "logreg", "lora": base / "runs" / "lora",
            "heads": base / "runs" / "h"}


def run_detect(run: Path, inputs: list, out: Path, *extra: str) -> pd.DataFrame:
    assert detect_cli.main(["--run", str(run), *map(str, inputs), "--out", str(out), *QUIET, *extra]) == 0
    return pd.read_csv(out / "detections.csv", keep_default_na=False)


def evaluator_videos(run: Path) -> pd.DataFrame:
    """Per-video scores as evaluate.py computes them from the run's scores table (mean of frame scores)."""
    scores = pd.read_csv(run / "scores.csv", keep_default_na=False)
    return scores[scores.split == "test"].groupby("video").agg(score=("score", "mean"), n=("score", "size"))


@pytest.mark.parametrize("kind", ["head", "lora"])
def test_held_out_videos_get_the_evaluators_scores(strong, kind, tmp_path, capsys):
    run = strong[kind]
    expected = evaluator_videos(run)
    found = run_detect(run, [strong["root"] / video for video in expected.index], tmp_path / "out")
    found["video"] = [str(Path(p).relative_to(strong["root"])) for p in found.input]
    found = found.set_index("video").loc[expected.index]
    assert (found.status == OK).all() and (found.frames == expected.n).all()
    np.testing.assert_allclose(found.score.astype(float), expected.score, atol=1e-4, rtol=0)
    threshold, _ = choose_threshold(pd.read_csv(run / "scores.csv", keep_default_na=False))
    assert (found.decision == np.where(expected.score >= threshold, "fake", "real")).all()
    printed = capsys.readouterr().out
    assert f"fake if the video score >= {threshold:.4f}" in printed and "validation frames" in printed
    frames = pd.read_csv(tmp_path / "out" / "frames.csv", keep_default_na=False)
    assert len(frames) == expected.n.sum()
    sheet = Image.open(tmp_path / "out" / found.sheet.iloc[0])
    assert sheet.width > 100 and sheet.height > 100


def write_video(path: Path, frames: list[np.ndarray], fourcc: str) -> Path:
    """RGB frames into a video file (FFV1 is lossless, MJPG is not)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 25.0, (width, height))
    assert writer.isOpened()
    for frame in frames:
        writer.write(np.ascontiguousarray(frame[..., ::-1]))
    writer.release()
    return path


def folder_frames(folder: Path) -> list[np.ndarray]:
    return [np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.glob("*.png"))]


def test_a_video_made_from_frames_gets_the_decision_of_its_folder(strong, tmp_path):
    folders = [strong["root"] / "FaceSwap" / sorted(p.name for p in (strong["root"] / "FaceSwap").iterdir())[k]
               for k in (0, 5)] + [strong["root"] / "Real_youtube" / "003"]
    videos = [write_video(tmp_path / "v" / f"{f.parent.name}-{f.name}.{ext}", folder_frames(f), fourcc)
              for f in folders for ext, fourcc in (("mkv", "FFV1"), ("avi", "MJPG"))]
    table = run_detect(strong["head"], [*folders, *videos], tmp_path / "out").set_index("input")
    for folder in folders:
        by_folder = table.loc[str(folder)]
        lossless = table.loc[str(tmp_path / "v" / f"{folder.parent.name}-{folder.name}.mkv")]
        jpeg = table.loc[str(tmp_path / "v" / f"{folder.parent.name}-{folder.name}.avi")]
        assert lossless.kind == jpeg.kind == "video" and lossless.frames == jpeg.frames == by_folder.frames
        assert float(lossless.score) == pytest.approx(float(by_folder.score), abs=1e-6)
        assert lossless.decision == jpeg.decision == by_folder.decision


# ---------------------------------------------------------------- face crops from the run's records


class FixedFace:
    """A detector stub that finds one face at a fixed place: crops are known without a real face detector."""

    BOX = (14.0, 12.0, 46.0, 50.0)

    def __call__(self, image: np.ndarray) -> list[detectors.Face]:
        return [detectors.Face(self.BOX, 1.0)] if image.mean() > 20 else []


@pytest.fixture(scope="module")
def prepared_run(tmp_path_factory) -> dict[str, Path]:
    """Videos -> prepare_frames.py (stub detector, dlib's five landmarks, aligned crops) -> cache -> logreg: a run
    whose data root records its crop recipe."""
    patch = pytest.MonkeyPatch()
    patch.setitem(detectors.DETECTORS, "fixed", FixedFace)
    base = tmp_path_factory.mktemp("prepared")
    frames = generate(base / "frames", videos=32, frames=5, size=64, strength=3, manipulations=("FaceSwap",))
    for folder in sorted(frames.glob("*/*")):
        write_video(base / "videos" / folder.parent.name / f"{folder.name}.mkv", folder_frames(folder), "FFV1")
    root, cache, runs = base / "data", base / "cache.h5", base / "runs"
    assert prepare_frames.main(["--videos-root", str(base / "videos"), "--out", str(root), "--frames-per-video", "3",
                                "--size", "48", "--detector", "fixed", "--align", "five-point", "--workers", "0"]) == 0
    assert extract_features.main(["--data-root", str(root), "--out", str(cache), *TINY]) == 0
    assert fit_heads.main(["--cache", str(cache), "--heads", "logreg", "--out", str(runs),
                           "--train-fakes", "FaceSwap", "--test-fakes", "FaceSwap", "--real-split", "60/20/20",
                           "--split-seed", "1"]) == 0
    yield {"videos": base / "videos", "frames": frames, "run": runs / "logreg", "root": root, "cache": cache}
    patch.undo()


def test_videos_are_sampled_and_cropped_as_the_run_was(prepared_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(detectors.DETECTORS, "fixed", FixedFace)
    expected = evaluator_videos(prepared_run["run"])
    videos = [prepared_run["videos"] / f"{video}.mkv" for video in expected.index]
    found = run_detect(prepared_run["run"], videos, tmp_path / "out")
    assert "fixed faces, margin 1.3, 48 px, 3 frames a video, align five-point" in capsys.readouterr().out
    np.testing.assert_allclose(found.score.astype(float), expected.score, atol=1e-4, rtol=0)
    assert (found.frames == 3).all() and (found.faces == 3).all()
    frames = pd.read_csv(tmp_path / "out" / "frames.csv")
    assert frames.frame.tolist()[:3] == [0, 2, 4]  # rint(linspace(0, 4, 3)), as prepare_frames samples
    # the aligned crops are the very ones prepare_frames.py made of these videos (faces.csv: crop bounds)
    made = pd.read_csv(prepared_run["root"] / "faces.csv", dtype={"video": str})
    made = made.assign(input=[str(prepared_run["videos"] / c / f"{v}.mkv") for c, v in zip(made["class"], made.video)])
    merged = frames.merge(made, on=["input", "frame"], suffixes=("", "_made"))
    assert len(merged) == len(frames)
    for column in ("x0", "y0", "x1", "y1"):
        np.testing.assert_allclose(merged[column], merged[f"{column}_made"], atol=0.011)
    # the folder of the full frames a video was made from is a video already decoded: same crops, same score
    folder = prepared_run["frames"] / Path(expected.index[0])
    again = run_detect(prepared_run["run"], [folder, videos[0]], tmp_path / "again")
    assert float(again.score[0]) == pytest.approx(float(again.score[1]), abs=1e-6)


def test_faceless_and_corrupt_inputs_are_listed_not_fatal(prepared_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(detectors.DETECTORS, "fixed", FixedFace)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.png").write_bytes(b"")
    (bad / "text.mp4").write_text("not a video")
    good = next(prepared_run["videos"].glob("FaceSwap/*.mkv"))
    (bad / "cut.mkv").write_bytes(good.read_bytes()[:300])
    Image.new("RGB", (64, 64), (5, 5, 5)).save(bad / "dark.png")  # the stub finds no face in a dark image
    inputs = [bad / "empty.png", bad / "text.mp4", bad / "cut.mkv", bad / "dark.png", good]
    table = run_detect(prepared_run["run"], inputs, tmp_path / "out").set_index("input")
    assert table.loc[str(good), "status"] == OK
    assert table.loc[str(bad / "dark.png"), "status"] == "no face"
    for name in ("empty.png", "text.mp4", "cut.mkv"):
        row = table.loc[str(bad / name)]
        assert row.status == FAILED and row.reason and row.score == ""
    out = capsys.readouterr().out
    assert "1 of 5 inputs scored" in out and "4 could not be scored" in out


def test_no_input_scored_is_an_error_after_listing(prepared_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(detectors.DETECTORS, "fixed", FixedFace)
    (tmp_path / "x.png").write_bytes(b"\x89PNG broken")
    assert detect_cli.main(["--run", str(prepared_run["run"]), str(tmp_path / "x.png"), "--out",
                            str(tmp_path / "out"), *QUIET]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: none of the 1 inputs could be scored")
    assert pd.read_csv(tmp_path / "out" / "detections.csv").status.tolist() == [FAILED]


# ---------------------------------------------------------------- explanations


def artifact_mask(root: Path, fake_path: str) -> np.ndarray:
    """Where a generated fake differs from its real target frame: fakes share the frame's noise, so this is
    exactly the planted artifact."""
    fake = np.asarray(Image.open(root / fake_path).convert("RGB"), dtype=int)
    target = Path(fake_path).parent.name.split("_")[0]
    real = np.asarray(Image.open(root / "Real_youtube" / target / Path(fake_path).name).convert("RGB"), dtype=int)
    return np.abs(fake - real).max(axis=2) > 0


def test_occlusion_puts_most_relevance_on_the_planted_artifact(strong, tmp_path):
    scores = pd.read_csv(strong["lora"] / "scores.csv", keep_default_na=False)
    fakes = scores[(scores.split == "test") & (scores.manipulation == "FaceSwap")]
    fakes = fakes.sort_values("score", ascending=False).head(6)
    table = run_detect(strong["lora"], [strong["root"] / p for p in fakes.path], tmp_path / "out", "--explain")
    shares, areas = [], []
    for path, maps in zip(fakes.path, table.relevance):
        relevance = np.load(tmp_path / "out" / maps)["relevance"][0]
        mask = artifact_mask(strong["root"], path)
        assert relevance.shape == mask.shape == (64, 64)
        shares.append(relevance_share(relevance, mask))
        areas.append(mask.mean())
    assert np.mean(shares) > 0.5, (shares, areas)
    assert np.mean(shares) > 1.5 * np.mean(areas)
    sheet = Image.open(tmp_path / "out" / table.sheet[0])
    assert sheet.height > 2 * 128  # frames and their relevance overlays


# ---------------------------------------------------------------- streaming and batching


def fake_input(name: str, n: int, status: str = OK) -> Prepared:
    pixels = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1) + 10 * len(name) if status == OK else None
    frames = [{"frame": k} for k in range(n)] if status == OK else []
    return Prepared(Item(Path(name), "frames"), status, pixels, frames, None, "" if status == OK else "broken")


@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_batches_span_inputs_and_keep_order_and_scores(batch_size):
    """Frames of several inputs share forward passes; every input still gets exactly its own frames' scores."""
    calls = []

    def score(images: torch.Tensor) -> np.ndarray:
        calls.append(len(images))
        return images.flatten().numpy().astype(float) / 100

    inputs = [fake_input("a", 2), fake_input("bb", 5), fake_input("x", 0, FAILED), fake_input("ccc", 1)]
    out = list(score_stream(inputs, Batcher(score, batch_size, threshold=0.2)))
    assert [o.prepared.item.path.name for o in out] == ["a", "bb", "x", "ccc"]
    assert max(calls) <= batch_size and sum(calls) == 8
    np.testing.assert_allclose(out[1].frame_scores, (np.arange(5) + 20) / 100)
    assert out[1].score == pytest.approx(0.22) and out[1].decision == "fake" and out[0].decision == "real"
    assert out[2].score is None and out[2].decision is None


# ---------------------------------------------------------------- refusals


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and err.strip().splitlines()[-1] == lines[0]
    return lines[0]


def copy_run(run: Path, to: Path) -> Path:
    shutil.copytree(run, to)
    return to


def edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def refusal(run: Path, tmp_path: Path, capsys, *inputs: str, extra: tuple[str, ...] = ()) -> str:
    assert detect_cli.main(["--run", str(run), *(inputs or [str(tmp_path)]), "--out", str(tmp_path / "o"),
                            *QUIET, *extra]) == 2
    return one_error_line(capsys)


def test_refusals_of_runs_that_cannot_be_rebuilt(strong, tmp_path, capsys):
    frame = str(next(strong["root"].glob("Real_youtube/*/*.png")))
    assert "does not exist" in refusal(tmp_path / "nope", tmp_path, capsys, frame)
    assert "holds fitted heads (logreg)" in refusal(strong["heads"], tmp_path, capsys, frame)
    assert "not a fitted head folder" in refusal(strong["root"], tmp_path, capsys, frame)

    gone = copy_run(strong["head"], tmp_path / "gone")
    edit_json(gone / "head.json", cache=str(tmp_path / "moved.h5"))
    message = refusal(gone, tmp_path, capsys, frame)
    assert "moved.h5" in message and "is gone" in message

    other = copy_run(strong["head"], tmp_path / "other")
    identity = json.loads((other / "head.json").read_text())["cache_identity"]
    edit_json(other / "head.json", cache_identity={**identity, "weights_fingerprint": "init_seed=7"})
    assert "weights_fingerprint" in refusal(other, tmp_path, capsys, frame)

    no_scores = copy_run(strong["head"], tmp_path / "no-scores")
    (no_scores / "scores.csv").unlink()
    assert "--threshold" in refusal(no_scores, tmp_path, capsys, frame)

    bad_pickle = copy_run(strong["head"], tmp_path / "bad-pickle")
    (bad_pickle / "model.joblib").write_bytes(b"garbage")
    assert "not a readable head" in refusal(bad_pickle, tmp_path, capsys, frame)

    tampered = copy_run(strong["lora"], tmp_path / "tampered")
    adapter = tampered / "adapter" / "adapter_model.safetensors"
    adapter.write_bytes(adapter.read_bytes()[:-4] + b"\0\0\0\0")
    assert "is not the adapter the run recorded" in refusal(tampered, tmp_path, capsys, frame)


def test_refusal_of_other_face_models(prepared_run, tmp_path, monkeypatch, capsys):
    """Crops made with other detector or landmark weights than the installed ones cannot be rebuilt."""
    monkeypatch.setitem(detectors.DETECTORS, "fixed", FixedFace)
    run = copy_run(prepared_run["run"], tmp_path / "run")
    meta = json.loads((run / "head.json").read_text())
    attrs = json.loads(prepared_run["cache"].with_name(prepared_run["cache"].name + ".json").read_text())
    crops = {**attrs["crops"], "models": {name: "0" * 64 for name in attrs["crops"]["models"]}}
    (tmp_path / "moved.json").write_text(json.dumps({**attrs, "crops": crops}))
    edit_json(run / "head.json", cache=str(tmp_path / "moved.h5"), cache_identity={**meta["cache_identity"],
                                                                                    "crops": crops})
    video = next(prepared_run["videos"].glob("FaceSwap/*.mkv"))
    assert "differs from the one the frames of" in refusal(run, tmp_path, capsys, str(video))


def test_refusals_of_checkpoint_weights(strong, tmp_path, capsys):
    """A run made with a checkpoint file: the file must still be there and still be the same file."""
    weights = tmp_path / "tiny.safetensors"
    save_file({k: v.float().contiguous() for k, v in load_model(ModelSettings("tiny-vit", "none")).model.state_dict()
               .items()}, str(weights))
    cache = tmp_path / "c" / "file.h5"
    assert extract_features.main(["--data-root", str(strong["root"]), "--out", str(cache), "--model", "tiny-vit",
                                  "--pretrained", str(weights), "--workers", "0", "--batch-size", "64"]) == 0
    assert fit_heads.main(["--cache", str(cache), "--heads", "logreg", "--out", str(tmp_path / "r"), *PROTOCOL]) == 0
    run, frame = tmp_path / "r" / "logreg", str(next(strong["root"].glob("FaceSwap/*/*.png")))
    capsys.readouterr()
    weights.write_bytes(weights.read_bytes()[:-8] + b"\x01" * 8)
    assert "weights_fingerprint" in refusal(run, tmp_path, capsys, frame)
    weights.unlink()
    assert f"the weights file {weights} it was trained with is missing" in refusal(run, tmp_path, capsys, frame)


def test_refusals_of_bad_options_and_inputs(strong, tmp_path, capsys):
    run, frame = strong["head"], str(next(strong["root"].glob("Real_youtube/*/*.png")))
    assert "input" in refusal(run, tmp_path, capsys, str(tmp_path / "missing.mp4"))
    (tmp_path / "empty").mkdir()
    assert "holds no images" in refusal(run, tmp_path, capsys, str(tmp_path / "empty"))
    assert "--frames-per-video" in refusal(run, tmp_path, capsys, frame, extra=("--frames-per-video", "0"))
    assert "--threshold" in refusal(run, tmp_path, capsys, frame, extra=("--threshold", "1.5"))
    assert "fp16" in refusal(run, tmp_path, capsys, frame, extra=("--precision", "fp16", "--device", "cpu"))
    assert "--explain-patch" in refusal(run, tmp_path, capsys, frame, extra=("--explain", "--explain-patch", "999"))
    (tmp_path / "file").write_text("x")
    assert detect_cli.main(["--run", str(run), frame, "--out", str(tmp_path / "file"), *QUIET]) == 2
    assert "--out" in one_error_line(capsys)
    assert detect_cli.main(["--run", str(run), frame, "--out", str(run / "inside"), *QUIET]) == 2
    assert "inside the input --run" in one_error_line(capsys)


def test_json_output_is_machine_readable_only(strong, tmp_path, capsys):
    frames = sorted(strong["root"].glob("NeuralTextures/*"))[:2]
    assert detect_cli.main(["--run", str(strong["head"]), *map(str, frames), "--out", str(tmp_path / "o"), "--json",
                            *QUIET]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [row["input"] for row in data["inputs"]] == [str(f) for f in frames]
    assert data["detector"]["kind"] == "head" and all(len(row["frames"]) == 2 for row in data["inputs"])
    assert data == json.loads((tmp_path / "o" / "detections.json").read_text())


def test_frames_per_video_scores_that_many_frames_spread_evenly(strong, tmp_path):
    """--frames-per-video 1 on a folder of 2 frames scores one: the earlier middle frame (index (2 - 1) // 2 = 0),
    with the very score it gets when every frame is scored, and that score is the input's."""
    folder = sorted(strong["root"].glob("NeuralTextures/*"))[0]
    names = sorted(p.name for p in folder.iterdir())
    run_detect(strong["head"], [folder], tmp_path / "all")
    every = pd.read_csv(tmp_path / "all" / "frames.csv", keep_default_na=False).set_index("frame")
    table = run_detect(strong["head"], [folder], tmp_path / "one", "--frames-per-video", "1")
    one = pd.read_csv(tmp_path / "one" / "frames.csv", keep_default_na=False)
    assert sorted(every.index) == names and len(names) == 2
    assert one.frame.tolist() == [names[0]] and table.frames.tolist() == [1]
    assert one.score[0] == pytest.approx(every.score[names[0]], abs=1e-4)  # float32 forwards of other batch sizes
    assert table.score[0] == pytest.approx(one.score[0], abs=1e-9)


# ---------------------------------------------------------------- calibration, margin, what the scores are


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_calibration_on_the_runs_validation_frames_matches_scikit_learn(strong, method, tmp_path, capsys):
    run = strong["head"]
    scores = pd.read_csv(run / "scores.csv", keep_default_na=False)
    val = scores[scores.split == "val"]
    inputs = sorted(strong["root"].glob("FaceSwap/*"))[:3] + sorted(strong["root"].glob("Real_youtube/*/*.png"))[:2]
    table = run_detect(run, inputs, tmp_path / "out", "--calibrate", method)
    record = json.loads((tmp_path / "out" / "detections.json").read_text())["calibration"]
    assert record["method"] == method and record["n_val_rows"] == len(val) and record["n_val_fake"] == val.label.sum()
    raw = table.score.astype(float).to_numpy()
    if method == "platt":  # unpenalised logistic regression on the score, redone here
        model = LogisticRegression(C=np.inf).fit(val[["score"]].to_numpy(), val.label)
        expected = model.predict_proba(raw[:, None])[:, 1]
        a, b = record["parameters"]["a"], record["parameters"]["b"]
        assert (a, b) == pytest.approx((model.coef_[0, 0], model.intercept_[0]), rel=1e-6)
        np.testing.assert_allclose(1 / (1 + np.exp(-(a * raw + b))), expected, atol=1e-9)
    else:
        expected = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(val.score, val.label).predict(raw)
        np.testing.assert_allclose(np.interp(raw, record["parameters"]["x"], record["parameters"]["y"]), expected)
    np.testing.assert_allclose(table.calibrated.astype(float), expected, atol=1e-9)
    threshold, _ = choose_threshold(scores)
    np.testing.assert_allclose(table.margin.astype(float), raw - threshold, atol=1e-12)
    printed = capsys.readouterr().out
    assert f"calibrated with {method} on {len(val)} validation frames" in printed and "P(fake)" in printed


def test_raw_scores_are_said_to_be_uncalibrated(strong, tmp_path, capsys):
    frame = sorted(strong["root"].glob("FaceSwap/*/*.png"))[0]
    table = run_detect(strong["head"], [frame], tmp_path / "out")
    assert table.calibrated.tolist() == [""] and table.kind.tolist() == ["image"]
    data = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert data["calibration"] is None and data["scores"].startswith("raw, uncalibrated")
    printed = capsys.readouterr().out
    assert "raw scores are uncalibrated" in printed and "%" not in printed
    assert Image.open(tmp_path / "out" / table.sheet[0]).width >= 600  # a single image's header is not clipped
    assert detect_cli.main(["--run", str(strong["head"]), str(frame), "--calibrate", "plat"]) == 2
    assert capsys.readouterr().err.strip() == ("error: --calibrate: unknown calibration 'plat'; choose from none, "
                                               "platt, isotonic; did you mean 'platt'?")
