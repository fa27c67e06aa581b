"""Splits by video: determinism, stability, leak-freedom, FF++ split files and errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clipforensics.core.errors import UserError
from clipforensics.data.manifest import ManifestSettings, scan
from clipforensics.data.protocol import (MIN_GROUPS, ProtocolSettings, assign_splits, check_splits,
                                         load_split_file, log_splits, make_splits, parse_real_split,
                                         split_summary)
from clipforensics.data.splitfile import write_split_table
from clipforensics.synthetic.write import generate

N_REAL = 200


def make_manifest(n_real: int = N_REAL, frames: int = 2,
                  manipulations: tuple[str, ...] = ("FaceSwap", "NeuralTextures", "Deepfakes")) -> pd.DataFrame:
    """FF++-like manifest: real videos 000..n-1 and, per manipulation, swapped pairs 2k_2k+1 and 2k+1_2k."""
    rows = []
    for i in range(n_real):
        rid = f"{i:03d}"
        rows += [(f"Real_youtube/{rid}/{f:03d}.png", 0, "Real_youtube", f"Real_youtube/{rid}", rid, "")
                 for f in range(frames)]
        src = f"{i ^ 1:03d}"
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


def test_adding_unrelated_videos_moves_no_video() -> None:
    small = video_splits(assign_splits(make_manifest(150), ProtocolSettings()))
    large = video_splits(assign_splits(make_manifest(300), ProtocolSettings()))
    assert large[small.index].equals(small)


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
    assert fs["split"].tolist() == [real[t] for t in fs["target"]]
    assert fs["split"].tolist() == [real[s] for s in fs["source"]]
    assert set(fs["split"]) == {"train", "val", "test"}


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


def test_custom_real_split() -> None:
    df = assign_splits(make_manifest(1000, frames=1), ProtocolSettings(real_split="80/0/20"))
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


def test_one_class_test_split(tmp_path: Path) -> None:
    manifest = make_manifest(manipulations=("FaceSwap",))
    with pytest.raises(UserError, match="test split has no fake videos"):
        assign_splits(manifest, ProtocolSettings(test_fakes=("rest",)))
    with pytest.raises(UserError, match="test split is empty"):
        assign_splits(manifest, ProtocolSettings(real_split="100/0/0", test_fakes=("FaceSwap",)))
    reals_in_train = {"train": [["000", "001"]], "val": [], "test": [["100", "101"]]}
    partial = manifest_of(["000", "001"], [("000", "001"), ("100", "101")])
    with pytest.raises(UserError, match="test split has no real videos"):
        assign_splits(partial, ProtocolSettings(split_file=write_single(tmp_path, reals_in_train)))


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


def test_the_split_log_is_one_line_per_split_with_counts_taken_from_the_rows(capsys) -> None:
    splits = make_splits(make_manifest(), ProtocolSettings())
    log_splits(splits)
    lines = capsys.readouterr().err.splitlines()
    rows = splits.rows.assign(split=splits.rows["split"].replace("", "unused"))
    assert [line.split(":")[0].strip() for line in lines] == ["train", "val", "test", "unused"]
    for line in lines:
        split = line.split(":")[0].strip()
        mine = rows[rows["split"] == split]
        expected = [f"{m} {g['video'].nunique()} videos ({len(g)} frames)" for m, g in mine.groupby("manipulation")]
        assert line.split(": ", 1)[1] == ", ".join(expected)


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
        for name, video in (("Real_youtube", f"{i:03d}"), ("FaceSwap", f"{i:03d}_{i ^ 1:03d}"),
                            ("NeuralTextures", f"{i:03d}_{i ^ 1:03d}")):
            path = tmp_path / name / video / "000.png"
            path.parent.mkdir(parents=True)
            path.touch()
    df = assign_splits(scan(ManifestSettings(data_root=str(tmp_path))), ProtocolSettings())
    assert set(df["split"]) <= {"train", "val", "test", ""}
    assert df["video"].is_unique


# ---------------------------------------------------------------- issue 10: the data shapes users really have

COLUMNS = ["path", "label", "manipulation", "video", "target", "source"]


def manifest_of(reals: list[str], fakes: list[tuple[str, str]],
                manipulations: tuple[str, ...] = ("FaceSwap", "NeuralTextures")) -> pd.DataFrame:
    """One frame per video: the given real ids, and a fake target_source per pair and manipulation."""
    rows = [(f"Real_youtube/{r}/0.png", 0, "Real_youtube", f"Real_youtube/{r}", r, "") for r in reals]
    rows += [(f"{m}/{t}_{s}/0.png", 1, m, f"{m}/{t}_{s}", t, s) for m in manipulations for t, s in fakes]
    return pd.DataFrame(rows, columns=COLUMNS).sort_values("path", ignore_index=True)


def components(videos: pd.DataFrame) -> pd.Series:
    """Video -> a label of its connected component over ids, by breadth-first search (independent of the code)."""
    ids = {v: [t, s] if s else [t] for v, t, s in zip(videos["video"], videos["target"], videos["source"])}
    neighbours: dict[str, set[str]] = {}
    for members in ids.values():
        for a in members:
            neighbours.setdefault(a, set()).update(members)
    label: dict[str, str] = {}
    for start in sorted(neighbours):
        todo = [start]
        while todo:
            node = todo.pop()
            if node not in label:
                label[node] = start
                todo.extend(neighbours[node])
    return pd.Series({v: label[members[0]] for v, members in ids.items()})


def used_splits_per_component(df: pd.DataFrame) -> pd.Series:
    videos = df.drop_duplicates("video")
    used = videos[videos["split"] != ""]
    return used.groupby(used["video"].map(components(videos)))["split"].agg(frozenset)


def partial_root_pairs(n_ids: int = 200, seed: int = 7) -> list[tuple[str, str]]:
    """n_ids / 2 swapped pairs (both directions) over ids 000..n_ids-1, drawn at random."""
    order = np.random.default_rng(seed).permutation(n_ids)
    return [(f"{a:03d}", f"{b:03d}") for i in range(0, n_ids, 2)
            for a, b in ((order[i], order[i + 1]), (order[i + 1], order[i]))]


def unordered(df: pd.DataFrame) -> pd.Series:
    return pd.Series([tuple(sorted(p)) for p in zip(df["target"], df["source"])], index=df.index)


@pytest.mark.parametrize("seed", [0, 1])
def test_partial_data_root_never_leaks_a_pair_into_test(seed: int) -> None:
    """Course subsets: reals 000-099 present, FaceSwap + NeuralTextures fakes over pairs of 000-199.
    A fake whose real videos are absent goes where every other video sharing its ids goes."""
    reals = [f"{i:03d}" for i in range(100)]
    df = assign_splits(manifest_of(reals, partial_root_pairs()), ProtocolSettings(split_seed=seed))
    videos = df.drop_duplicates("video")
    fs, nt = videos[videos["manipulation"] == "FaceSwap"], videos[videos["manipulation"] == "NeuralTextures"]
    trained = set(unordered(fs[fs["split"].isin(["train", "val"])]))
    tested = unordered(nt[nt["split"] == "test"])
    assert len(tested) >= 20
    assert sum(pair in trained for pair in tested) == 0
    assert (used_splits_per_component(df).map(len) == 1).all()


def one_direction_pairs(n: int) -> list[tuple[str, str]]:
    return [(f"{i:03d}", f"{i + 1:03d}") for i in range(0, n, 2)]


def test_adding_swapped_partners_moves_no_video() -> None:
    """000_001 alone first, then 001_000 beside it: no existing video changes split, and both real
    videos of a one-direction pair already share one."""
    reals = [f"{i:03d}" for i in range(200)]
    one_way = video_splits(assign_splits(manifest_of(reals, one_direction_pairs(200)), ProtocolSettings()))
    swapped = one_direction_pairs(200) + [(s, t) for t, s in one_direction_pairs(200)]
    both_ways = video_splits(assign_splits(manifest_of(reals, swapped), ProtocolSettings()))
    assert both_ways[one_way.index].equals(one_way)
    real = one_way[[f"Real_youtube/{r}" for r in reals]].to_numpy()
    assert (real[0::2] == real[1::2]).all()


def test_fakes_chain_their_real_videos_into_one_group() -> None:
    """000_001 and 001_002 put 000, 001 and 002 (and every fake of them) in one split."""
    chain = [(f"{i:03d}", f"{i + 1:03d}") for i in range(0, 9)]
    others = [(f"{i:03d}", f"{i ^ 1:03d}") for i in range(10, 60)]
    df = assign_splits(manifest_of([f"{i:03d}" for i in range(60)], chain + others), ProtocolSettings())
    videos = df.drop_duplicates("video")
    in_chain = videos[videos["target"].astype(int) < 10]
    assert in_chain["group"].nunique() == 1 and set(in_chain["group"]) == {"000"}
    assert in_chain.loc[in_chain["split"] != "", "split"].nunique() == 1
    assert (used_splits_per_component(df).map(len) == 1).all()


def generated_manifest(tmp_path: Path, **kw) -> pd.DataFrame:
    """The manifest of `python -m clipforensics.synthetic` with its default video count (1 tiny frame)."""
    return scan(ManifestSettings(data_root=str(generate(tmp_path / "d", frames=1, size=32, **kw))))


def test_default_generated_set_has_both_classes_in_every_split(tmp_path: Path) -> None:
    """The generator's default size and the default protocol compose: val and test hold both classes."""
    manifest = generated_manifest(tmp_path)
    for seed in range(10):
        df = assign_splits(manifest, ProtocolSettings(split_seed=seed))
        for split in ("train", "val", "test"):
            assert set(df.loc[df["split"] == split, "label"]) == {0, 1}, (seed, split)
        tested = df.loc[df["split"] == "test", "manipulation"]
        assert {"Real_youtube", "NeuralTextures"} <= set(tested)


@pytest.mark.parametrize("n_groups, seed", [(5, s) for s in range(6)] + [(7, s) for s in range(6)])
def test_small_data_gets_every_class_into_val_and_test(n_groups: int, seed: int) -> None:
    manifest = make_manifest(2 * n_groups, frames=1)
    splits = make_splits(manifest, ProtocolSettings(split_seed=seed, test_fakes=("rest",)))
    videos = splits.rows.drop_duplicates("video")
    groups = videos[videos["label"] == 0].drop_duplicates("group")
    for split in ("val", "test"):
        assert (groups["split"] == split).sum() >= 1, split
    assert {"Real_youtube", "FaceSwap"} <= set(videos.loc[videos["split"] == "val", "manipulation"])
    assert {"Real_youtube", "NeuralTextures", "Deepfakes"} <= set(videos.loc[videos["split"] == "test",
                                                                              "manipulation"])
    again = make_splits(manifest, ProtocolSettings(split_seed=seed, test_fakes=("rest",)))
    assert again.moves == splits.moves and again.rows.equals(splits.rows)
    assert all(line.startswith("protocol: group ") for line in splits.notes())


def test_moves_only_when_a_split_lacks_a_class() -> None:
    """On large data the hash alone fills every split: nothing is moved."""
    assert make_splits(make_manifest(400, frames=1), ProtocolSettings()).moves == []


def test_few_groups_are_left_to_the_hash() -> None:
    """Below MIN_GROUPS no group is forced into val or test (the checks then speak)."""
    manifest = make_manifest(2 * (MIN_GROUPS - 1), frames=1)
    for seed in range(20):
        try:
            assert make_splits(manifest, ProtocolSettings(split_seed=seed)).moves == []
        except UserError as exc:
            assert "split" in str(exc)


def test_official_list_splitting_a_group_is_refused(tmp_path: Path) -> None:
    manifest = pd.concat([official_manifest(), manifest_of([], [("000", "004")], ("FaceSwap",))],
                         ignore_index=True)
    with pytest.raises(UserError, match=r"ids 000 \(train\) and 004 \(val\)"):
        assign_splits(manifest, ProtocolSettings(split_file=write_single(tmp_path, OFFICIAL)))


def test_splits_csv_reproduces_a_split_exactly(tmp_path: Path) -> None:
    """splits.csv from one run, passed back as --split-file, gives the same split on the same data,
    even under another seed; new videos of a known group join it, others stay unused."""
    manifest = manifest_of([f"{i:03d}" for i in range(100)], partial_root_pairs())
    first = make_splits(manifest, ProtocolSettings(split_seed=3))
    path = write_split_table(tmp_path, first.table())
    assert path.name == "splits.csv"
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert list(table.columns) == ["video", "class", "group", "split"]
    assert set(table["split"]) == {"train", "val", "test", "unused"}
    again = assign_splits(manifest, ProtocolSettings(split_seed=9, split_file=str(path)))
    assert again["split"].equals(first.rows["split"]) and again["group"].equals(first.rows["group"])
    grown = pd.concat([manifest, manifest_of(["150", "300"], [("300", "301")])], ignore_index=True)
    third = video_splits(assign_splits(grown, ProtocolSettings(split_file=str(path))))
    assert third["Real_youtube/150"] == video_splits(first.rows)[f"NeuralTextures/150_{partner_of('150')}"] or \
        third["Real_youtube/150"] in ("train", "val", "test")
    assert third["Real_youtube/300"] == "" and third["FaceSwap/300_301"] == ""


def partner_of(vid: str) -> str:
    return next(s for t, s in partial_root_pairs() if t == vid)


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.assign(split=t["split"].replace("val", "dev")), "unknown split value.*'dev'"),
    (lambda t: t.drop(columns="split"), "lacks column.*split"),
    (lambda t: pd.concat([t, t[t["video"] == "Real_youtube/000"].assign(split=lambda r: r["split"].map(
        {"train": "test", "val": "test", "test": "train"}))]), "video Real_youtube/000 in two splits"),
])
def test_bad_splits_csv(tmp_path: Path, edit, message: str) -> None:
    manifest = make_manifest(40, frames=1)
    table = edit(make_splits(manifest, ProtocolSettings()).table())
    table.to_csv(tmp_path / "splits.csv", index=False)
    with pytest.raises(UserError, match=message):
        assign_splits(manifest, ProtocolSettings(split_file=str(tmp_path / "splits.csv")))


def test_splits_csv_splitting_a_group_is_refused(tmp_path: Path) -> None:
    manifest = make_manifest(40, frames=1)
    table = make_splits(manifest, ProtocolSettings()).table()
    row = table.index[table["video"] == "Real_youtube/001"][0]
    table.loc[row, "split"] = "test" if table.loc[row, "split"] != "test" else "train"
    table.to_csv(tmp_path / "splits.csv", index=False)
    with pytest.raises(UserError, match="one group of videos in 2 splits: videos .*Real_youtube/001"):
        assign_splits(manifest, ProtocolSettings(split_file=str(tmp_path / "splits.csv")))


# ---------------------------------------------------------------- frames in number order (issue 22, item 3)

def test_frames_are_spread_in_frame_number_order_and_one_is_the_middle() -> None:
    """0.png .. 11.png sorted as strings gave 0, 1, 10, 11, 2, ...: 3 frames kept 0, 4, 9 and missed the last."""
    from clipforensics.core.sampling import natural_key, sample_frames, spread

    paths = [f"FaceSwap/000_003/{i}.png" for i in range(12)]
    df = pd.DataFrame({"path": paths[::-1], "video": "FaceSwap/000_003"})
    kept = sorted(int(Path(p).stem) for p in sample_frames(df, 3)["path"])
    assert kept == [0, 6, 11]
    assert list(sample_frames(df, 1)["path"]) == ["FaceSwap/000_003/5.png"]
    assert list(spread(60, 1)) == [29] and list(spread(1, 1)) == [0]
    assert sorted(["f10.png", "f9.png", "f007.png", "f7.png"], key=natural_key) == ["f007.png", "f7.png", "f9.png",
                                                                                     "f10.png"]


def test_the_protocol_and_the_frames_per_video_curve_use_the_same_order() -> None:
    """make_splits with --frames-per-video 3 on 11-frame videos (string order) keeps frames 0, 5, 10 of each."""
    from clipforensics.data.protocol import make_splits
    from clipforensics.evaluate.compare import first_frames_spread

    one = manifest_of([f"{i:03d}" for i in range(40)], [(f"{i:03d}", f"{i + 1:03d}") for i in range(0, 40, 2)])
    many = pd.concat([one.assign(path=one["path"].str.replace("/0.png", f"/{i}.png")) for i in range(11)])
    many = many.sort_values("path", ignore_index=True)
    rows = make_splits(many, ProtocolSettings(frames_per_video=3)).rows
    numbers = rows.groupby("video")["path"].agg(lambda p: sorted(int(Path(x).stem) for x in p))
    assert set(numbers.map(tuple)) == {(0, 5, 10)}
    test = rows.assign(split="test")
    assert sorted(int(Path(p).stem) for p in first_frames_spread(many.head(11), 1)["path"]) == [5]
    assert len(first_frames_spread(test, 1)) == test["video"].nunique()
