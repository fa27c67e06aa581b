"""Splits by video: determinism, stability, leak-freedom, FF++ split files and errors."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from clipforensics.core.errors import UserError
from clipforensics.data.manifest import ManifestSettings, scan
from clipforensics.data.protocol import (ProtocolSettings, assign_splits, check_splits, load_split_file,
                                    parse_real_split, split_summary)

N_REAL = 200


def make_manifest(n_real: int = N_REAL, frames: int = 2,
                  manipulations: tuple[str, ...] = ("FaceSwap", "NeuralTextures", "Deepfakes")) -> pd.DataFrame:
    """FF++-like manifest: real videos 000..n-1, each fake i = target i, source (i + 1) mod n."""
    rows = []
    for i in range(n_real):
        rid = f"{i:03d}"
        rows += [(f"Real_youtube/{rid}/{f:03d}.png", 0, "Real_youtube", f"Real_youtube/{rid}", rid, "")
                 for f in range(frames)]
        src = f"{(i + 1) % n_real:03d}"
        for name in manipulations:
            rows += [(f"{name}/{rid}_{src}/{f:03d}.png", 1, name, f"{name}/{rid}_{src}", rid, src)
                     for f in range(frames)]
    df = pd.DataFrame(rows, columns=["path", "label", "manipulation", "video", "target", "source"])
    return df.sort_values("path", ignore_index=True)


def video_splits(df: pd.DataFrame) -> pd.Series:
    return df.groupby("video")["split"].first()


def test_default_cross_manipulation() -> None:
    df = assign_splits(make_manifest(), ProtocolSettings())
    per = df.groupby("manipulation")["split"].agg(set)
    assert per["Real_youtube"] == {"train", "val", "test"}
    assert per["FaceSwap"] <= {"train", "val", ""}
    assert per["NeuralTextures"] <= {"test", ""} and "test" in per["NeuralTextures"]
    assert per["Deepfakes"] == {""}
    assert len(df) == len(make_manifest())


def test_deterministic_and_seeded() -> None:
    manifest = make_manifest()
    a = video_splits(assign_splits(manifest, ProtocolSettings(split_seed=1)))
    b = video_splits(assign_splits(manifest, ProtocolSettings(split_seed=1)))
    c = video_splits(assign_splits(manifest, ProtocolSettings(split_seed=2)))
    assert a.equals(b)
    assert not a.equals(c)


def test_adding_videos_keeps_existing_splits() -> None:
    small = video_splits(assign_splits(make_manifest(150), ProtocolSettings()))
    large = video_splits(assign_splits(make_manifest(300), ProtocolSettings()))
    reals = [v for v in small.index if v.startswith("Real_youtube/") and v != "Real_youtube/149"]  # pair changed
    assert large[reals].equals(small[reals])
    stable_fakes = [v for v in small.index if v.startswith("FaceSwap/") and not v.endswith(("_000", "_149"))]
    assert large[stable_fakes].equals(small[stable_fakes])


def test_test_fakes_are_made_only_of_test_real_videos() -> None:
    """A test fake built on a training real video would put training frames into the test set."""
    df = assign_splits(make_manifest(), ProtocolSettings(test_fakes=("rest",)))
    real = real_split_of(df)
    test_fakes = df[(df["label"] == 1) & (df["split"] == "test")].drop_duplicates("video")
    assert len(test_fakes) > 0
    assert all(real[t] == "test" and real[s] == "test" for t, s in zip(test_fakes["target"], test_fakes["source"]))


def test_swapped_pairs_share_a_split() -> None:
    """FF++ pairs 000_003 / 003_000: both real videos get one split, so their fakes are usable."""
    rows = []
    for a, b in [(i, i + 1) for i in range(0, 100, 2)]:
        for t, s in ((a, b), (b, a)):
            rows.append((f"Real_youtube/{t:03d}/0.png", 0, "Real_youtube", f"Real_youtube/{t:03d}", f"{t:03d}", ""))
            rows.append((f"FaceSwap/{t:03d}_{s:03d}/0.png", 1, "FaceSwap", f"FaceSwap/{t:03d}_{s:03d}", f"{t:03d}",
                         f"{s:03d}"))
            rows.append((f"NeuralTextures/{t:03d}_{s:03d}/0.png", 1, "NeuralTextures",
                         f"NeuralTextures/{t:03d}_{s:03d}", f"{t:03d}", f"{s:03d}"))
    df = assign_splits(pd.DataFrame(rows, columns=["path", "label", "manipulation", "video", "target", "source"]),
                       ProtocolSettings())
    real = real_split_of(df)
    assert all(real[f"{a:03d}"] == real[f"{a + 1:03d}"] for a in range(0, 100, 2))
    assert (df.loc[df["manipulation"] == "NeuralTextures", "split"] == "test").sum() > 0
    assert (df.loc[df["manipulation"] == "NeuralTextures", "split"].isin(["test", ""])).all()


def test_no_video_in_two_splits() -> None:
    df = assign_splits(make_manifest(frames=5), ProtocolSettings())
    assert (df.groupby("video")["split"].nunique() == 1).all()


def real_split_of(df: pd.DataFrame) -> dict[str, str]:
    reals = df[df["label"] == 0]
    return dict(zip(reals["target"], reals["split"]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_training_fakes_never_come_from_test_reals(seed: int) -> None:
    df = assign_splits(make_manifest(), ProtocolSettings(split_seed=seed))
    real = real_split_of(df)
    fs = df[df["manipulation"] == "FaceSwap"]
    trained = fs[fs["split"].isin(["train", "val"])]
    assert trained["target"].map(real).ne("test").all() and trained["source"].map(real).ne("test").all()
    in_train = fs[fs["split"] == "train"]
    assert in_train["target"].map(real).eq("train").all() and in_train["source"].map(real).eq("train").all()
    assert set(fs.loc[fs["target"].map(real) == "test", "split"]) == {""}


def test_in_domain_fakes_follow_their_reals() -> None:
    settings = ProtocolSettings(train_fakes=("FaceSwap",), test_fakes=("FaceSwap",))
    df = assign_splits(make_manifest(), settings)
    real = real_split_of(df)
    fs = df[df["manipulation"] == "FaceSwap"].drop_duplicates("video")
    rank = {"train": 0, "val": 1, "test": 2}
    latest = [max(real[t], real[s], key=rank.get) for t, s in zip(fs["target"], fs["source"])]
    expected = [split if real[t] == real[s] == split else "" for t, s, split in
                zip(fs["target"], fs["source"], latest)]
    assert fs["split"].tolist() == expected
    assert "" in expected, "some fakes have a source real video in a later split than their target"
    assert set(fs["split"]) == {"train", "val", "test", ""}


def test_rest_means_every_untrained_manipulation() -> None:
    df = assign_splits(make_manifest(), ProtocolSettings(test_fakes=("rest",)))
    assert set(df.loc[df["split"] == "test", "manipulation"]) == {"Real_youtube", "NeuralTextures", "Deepfakes"}


def test_real_proportions_roughly_70_10_20() -> None:
    df = assign_splits(make_manifest(3000, frames=1, manipulations=("FaceSwap", "NeuralTextures")),
                       ProtocolSettings())
    shares = df[df["label"] == 0]["split"].value_counts(normalize=True)
    assert shares["train"] == pytest.approx(0.7, abs=0.03)
    assert shares["val"] == pytest.approx(0.1, abs=0.02)
    assert shares["test"] == pytest.approx(0.2, abs=0.03)


def test_custom_real_split_and_fake_val() -> None:
    df = assign_splits(make_manifest(1000, frames=1), ProtocolSettings(real_split="80/0/20", fake_val=0.0))
    assert set(df.loc[df["label"] == 0, "split"]) == {"train", "test"}
    assert set(df.loc[df["manipulation"] == "FaceSwap", "split"]) == {"train", ""}


def test_frames_per_video() -> None:
    df = assign_splits(make_manifest(frames=9), ProtocolSettings(frames_per_video=3))
    assert (df.groupby("video").size() == 3).all()
    kept = sorted(df.loc[df["video"] == "Real_youtube/000", "path"])
    assert kept == ["Real_youtube/000/000.png", "Real_youtube/000/004.png", "Real_youtube/000/008.png"]


@pytest.mark.parametrize("text", ["70/10", "70/10/30", "a/b/c", "", "110/-10/0"])
def test_bad_real_split(text: str) -> None:
    with pytest.raises(UserError, match="real split"):
        parse_real_split(text)


def test_unknown_manipulation_lists_available() -> None:
    with pytest.raises(UserError, match="unknown manipulation.*Face2Face.*available: Deepfakes, FaceSwap"):
        assign_splits(make_manifest(), ProtocolSettings(train_fakes=("Face2Face",)))
    with pytest.raises(UserError, match="test fakes: Real_youtube"):
        assign_splits(make_manifest(), ProtocolSettings(test_fakes=("Real_youtube",)))


def test_one_class_test_split() -> None:
    manifest = make_manifest(manipulations=("FaceSwap",))
    with pytest.raises(UserError, match="test split has no fake videos"):
        assign_splits(manifest, ProtocolSettings(test_fakes=("rest",)))
    unpaired = make_manifest()
    unpaired.loc[unpaired["label"] == 1, ["target", "source"]] = ""
    with pytest.raises(UserError, match="test split has no real videos"):
        assign_splits(unpaired, ProtocolSettings(real_split="100/0/0"))
    with pytest.raises(UserError, match="test split is empty"):
        assign_splits(manifest, ProtocolSettings(real_split="100/0/0", test_fakes=("FaceSwap",)))


def test_one_class_train_split() -> None:
    with pytest.raises(UserError, match="train split has no fake videos"):
        assign_splits(make_manifest(), ProtocolSettings(train_fakes=()))


def test_check_splits_video_in_two_splits() -> None:
    df = assign_splits(make_manifest(), ProtocolSettings())
    first = df.index[df["video"] == "Real_youtube/000"][0]
    df.loc[first, "split"] = "val" if df.loc[first, "split"] != "val" else "train"
    with pytest.raises(UserError, match="Real_youtube/000 is in more than one split"):
        check_splits(df)


def test_split_summary() -> None:
    df = assign_splits(make_manifest(), ProtocolSettings())
    summary = split_summary(df)
    assert list(summary.columns) == ["split", "manipulation", "label", "videos", "frames"]
    assert summary["frames"].sum() == len(df)
    assert (summary["frames"] == 2 * summary["videos"]).all()
    assert list(dict.fromkeys(summary["split"])) == ["train", "val", "test", "unused"]


OFFICIAL = {"train": [["000", "001"], ["001", "000"], ["002", "003"]],
            "val": [["004", "005"]],
            "test": [["006", "007"], ["008", "009"]]}


def official_manifest() -> pd.DataFrame:
    """Reals 000..011 (010, 011 unlisted); fakes for every listed pair (both orders) plus 010_011."""
    rows = [(f"Real_youtube/{i:03d}/0.png", 0, "Real_youtube", f"Real_youtube/{i:03d}", f"{i:03d}", "")
            for i in range(12)]
    pairs = [(t, s) for split in OFFICIAL.values() for t, s in split] + [("005", "004"), ("010", "011")]
    for name in ("FaceSwap", "NeuralTextures"):
        rows += [(f"{name}/{t}_{s}/0.png", 1, name, f"{name}/{t}_{s}", t, s) for t, s in pairs]
    return pd.DataFrame(rows, columns=["path", "label", "manipulation", "video", "target", "source"])


@pytest.fixture(params=["folder", "single"])
def split_file(request, tmp_path: Path) -> Path:
    if request.param == "single":
        path = tmp_path / "splits.json"
        path.write_text(json.dumps(OFFICIAL))
        return path
    for name, pairs in OFFICIAL.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(pairs))
    return tmp_path


def test_official_splits(split_file: Path) -> None:
    df = assign_splits(official_manifest(), ProtocolSettings(split_file=str(split_file)))
    splits = video_splits(df)
    assert splits["Real_youtube/000"] == "train" and splits["Real_youtube/005"] == "val"
    assert splits["Real_youtube/009"] == "test" and splits["Real_youtube/010"] == ""
    assert splits["FaceSwap/001_000"] == "train" and splits["FaceSwap/005_004"] == "val"
    assert splits["FaceSwap/006_007"] == "" and splits["FaceSwap/010_011"] == ""
    assert splits["NeuralTextures/006_007"] == "test" and splits["NeuralTextures/000_001"] == ""


def test_official_splits_index(split_file: Path) -> None:
    official = load_split_file(str(split_file))
    assert official.ids["003"] == "train" and official.ids["008"] == "test"
    assert official.pairs[("006", "007")] == "test"


def write_single(tmp_path: Path, data) -> str:
    path = tmp_path / "splits.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


@pytest.mark.parametrize("data, message", [
    ({**OFFICIAL, "test": OFFICIAL["test"] + [["001", "000"]]}, "pair 001_000 in both train and test"),
    ({**OFFICIAL, "val": [["004", "002"]]}, "video 002 in both train and val"),
    ("{not json", "not valid JSON"),
    ({"train": [], "test": []}, "exactly the keys train, val, test"),
    ([["000", "001"]], "exactly the keys"),
    ({**OFFICIAL, "val": [["004"]]}, r"\[val\] must be a list of \[target, source\] pairs"),
    ({**OFFICIAL, "val": [[4, 5]]}, "pairs of id strings"),
])
def test_bad_split_files(tmp_path: Path, data, message: str) -> None:
    with pytest.raises(UserError, match=message):
        assign_splits(official_manifest(), ProtocolSettings(split_file=write_single(tmp_path, data)))


def test_missing_split_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        load_split_file(str(tmp_path / "nope.json"))
    (tmp_path / "train.json").write_text("[]")
    with pytest.raises(UserError, match="val.json not found"):
        load_split_file(str(tmp_path))


def test_protocol_on_scanned_tree(tmp_path: Path) -> None:
    for i in range(40):
        for name, video in (("Real_youtube", f"{i:03d}"), ("FaceSwap", f"{i:03d}_{(i + 1) % 40:03d}"),
                            ("NeuralTextures", f"{i:03d}_{(i + 1) % 40:03d}")):
            path = tmp_path / name / video / "000.png"
            path.parent.mkdir(parents=True)
            path.touch()
    df = assign_splits(scan(ManifestSettings(data_root=str(tmp_path))), ProtocolSettings())
    assert set(df["split"]) <= {"train", "val", "test", ""}
    assert df["video"].is_unique
