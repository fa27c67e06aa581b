"""The protocol through the stages (issue 10): splits.csv beside every split, defaults that compose,
a one-class validation set named as such, epoch 0 selectable."""

from __future__ import annotations

import pandas as pd
import pytest

import evaluate
import fit_heads
from clipforensics.core.errors import UserError
from clipforensics.measure.metrics import choose_threshold
from clipforensics.lora.train import TrainState

PROTOCOL = ["--train-fakes", "FaceSwap", "--test-fakes", "NeuralTextures"]


def scores_table(val_labels: list[int]) -> pd.DataFrame:
    rows = [(f"Real_youtube/{i}/0.png", f"Real_youtube/{i}", "Real_youtube", 0, "test", 0.2) for i in range(3)]
    rows += [(f"NeuralTextures/{i}/0.png", f"NeuralTextures/{i}", "NeuralTextures", 1, "test", 0.8) for i in range(3)]
    rows += [(f"X/v{i}/0.png", f"X/v{i}", "X", label, "val", 0.1 * i) for i, label in enumerate(val_labels)]
    return pd.DataFrame(rows, columns=["path", "video", "manipulation", "label", "split", "score"])


def test_one_class_validation_is_named_validation(tmp_path, capsys) -> None:
    with pytest.raises(UserError, match="validation rows have only real videos") as info:
        choose_threshold(scores_table([0, 0, 0]))
    assert "test set" not in str(info.value)
    path = tmp_path / "scores.csv"
    scores_table([1, 1]).to_csv(path, index=False)
    assert evaluate.main([str(path), "--out", str(tmp_path / "r"), "--bootstrap", "0"]) == 2
    err = capsys.readouterr().err
    assert "validation rows have only fake videos" in err and "test set" not in err


def test_epoch_zero_can_be_the_best_epoch() -> None:
    """The untrained model is logged as a candidate: it must win when no epoch beats it on validation."""

    class Frozen:
        def trainable_state(self) -> dict:
            return {"epoch": "later"}

    state = TrainState(0, [{"epoch": 0, "val_video_auc": 0.8, "val_frame_auc": 0.7}], 0, {"epoch": "zero"})
    state.record({"epoch": 1, "val_video_auc": 0.6, "val_frame_auc": 0.9}, Frozen())
    assert state.best_epoch == 0 and state.best == {"epoch": "zero"}
    state.record({"epoch": 2, "val_video_auc": 0.8, "val_frame_auc": 0.7}, Frozen())
    assert state.best_epoch == 0, "a tie keeps the earlier epoch"
    state.record({"epoch": 3, "val_video_auc": 0.9, "val_frame_auc": 0.5}, Frozen())
    assert state.best_epoch == 3 and state.best == {"epoch": "later"}


def test_heads_write_splits_csv(tiny_cache, tmp_path) -> None:
    out = tmp_path / "run"
    assert fit_heads.main(["--cache", str(tiny_cache), "--heads", "logreg", "--out", str(out), *PROTOCOL]) == 0
    table = pd.read_csv(out / "splits.csv", dtype=str, keep_default_na=False)
    assert list(table.columns) == ["video", "class", "group", "split"]
    scores = pd.read_csv(out / "logreg" / "scores.csv", dtype={"split": str}, keep_default_na=False)
    listed = table.set_index("video")["split"]
    assert (scores["video"].map(listed) == scores["split"]).all()
    again = tmp_path / "again"
    assert fit_heads.main(["--cache", str(tiny_cache), "--heads", "logreg", "--out", str(again), *PROTOCOL,
                           "--split-seed", "5", "--split-file", str(out / "splits.csv")]) == 0
    assert (again / "splits.csv").read_text() == (out / "splits.csv").read_text()
    assert pd.read_csv(again / "logreg" / "scores.csv")["path"].tolist() == scores["path"].tolist()


def test_default_flags_compose_on_the_default_generated_set(tmp_path, capsys) -> None:
    """`python -m clipforensics.synthetic --out D`, extract, then fit_heads / finetune_lora with default protocol
    flags: no stage refuses the split (the generator's default video count is what matters; frames are cut)."""
    import extract_features
    import finetune_lora
    from clipforensics.synthetic.__main__ import main as synthetic
    from conftest import TINY

    root, cache = tmp_path / "D", tmp_path / "c.h5"
    assert synthetic(["--out", str(root), "--frames-per-video", "2", "--size", "64"]) == 0
    assert extract_features.main(["--data-root", str(root), "--out", str(cache), *TINY]) == 0
    assert fit_heads.main(["--cache", str(cache), "--out", str(tmp_path / "heads")]) == 0
    assert finetune_lora.main(["--base-cache", str(cache), "--out", str(tmp_path / "lora"), "--epochs", "1",
                               "--max-train-images", "16", "--rank", "2", "--workers", "0", "--no-extract"]) == 0
    err = capsys.readouterr().err
    assert "error" not in err


# ---------------------------------------------------------------- LoRA provenance

def test_lora_provenance_refuses_a_protocol_that_tests_on_its_groups() -> None:
    """Partial root: groups without real videos. Under another seed, NeuralTextures test fakes of groups whose
    FaceSwap fakes trained the backbone (FaceSwap itself then dropped from test) count as overlap too."""
    from test_protocol import manifest_of, partial_root_pairs

    from clipforensics.data.protocol import ProtocolSettings, make_splits
    from clipforensics.data.provenance import LoraProvenance, check_lora_overlap, overlap, provenance_of

    manifest = manifest_of([f"{i:03d}" for i in range(100)], partial_root_pairs())
    lora = make_splits(manifest, ProtocolSettings())
    attrs = {"lora_run": "runs/x", **provenance_of({"train_fakes": ["FaceSwap"]}, lora.digest(), lora.rows,
                                                   "runs/x").attrs()}
    assert LoraProvenance.of(attrs).manipulations == ("FaceSwap",)
    assert check_lora_overlap(attrs, lora.rows, "c.h5") is not None
    other = make_splits(manifest, ProtocolSettings(split_seed=1)).rows
    found = overlap(LoraProvenance.of(attrs), other)
    videos = other.drop_duplicates("video")
    test = videos[videos["split"] == "test"]
    seen = set(lora.rows.loc[lora.rows["split"].isin(["train", "val"]), "group"])
    assert found["test"] == (int(test["group"].isin(seen).sum()), len(test)) and found["test"][0] > 0
    assert set(test.loc[test["group"].isin(seen), "manipulation"]) >= {"NeuralTextures"}
    with pytest.raises(UserError, match=rf"{found['test'][0]} of this protocol's {found['test'][1]} test videos"
                                        r".*--split-file runs/x/splits.csv"):
        check_lora_overlap(attrs, other, "c.h5")
    assert check_lora_overlap({}, other, "c.h5") is None


@pytest.fixture(scope="module")
def lora_run(tiny_cache, tmp_path_factory):
    """One short LoRA run on the shared tiny cache, re-extracted: (run folder, LoRA cache)."""
    import finetune_lora

    out = tmp_path_factory.mktemp("lora") / "run"
    cache_dir = out.parent / "caches"
    assert finetune_lora.main(["--base-cache", str(tiny_cache), "--out", str(out), "--epochs", "1",
                               "--max-train-images", "16", "--batch-size", "16", "--rank", "2", "--workers", "0",
                               "--cache-out", str(cache_dir), *PROTOCOL]) == 0
    return out, next(cache_dir.glob("*-lora-*.h5"))


def test_lora_cache_records_its_protocol_and_is_refused_under_another(lora_run, tmp_path, capsys) -> None:
    from clipforensics.data.cache import read_attrs

    run, cache = lora_run
    table = pd.read_csv(run / "splits.csv", dtype=str, keep_default_na=False)
    attrs = read_attrs(cache)
    assert set(attrs["lora_train_videos"]) == set(table.loc[table["split"] == "train", "video"])
    assert set(attrs["lora_val_videos"]) == set(table.loc[table["split"] == "val", "video"])
    assert attrs["lora_protocol"]["train_fakes"] == ["FaceSwap"]
    capsys.readouterr()
    assert fit_heads.main(["--cache", str(cache), "--heads", "logreg", "--out", str(tmp_path / "other"),
                           *PROTOCOL, "--split-seed", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "of this protocol's" in err[0] and "test videos" in err[0]
    assert fit_heads.main(["--cache", str(cache), "--heads", "logreg", "--out", str(tmp_path / "same"),
                           *PROTOCOL, "--test-fakes", "rest", "--split-file", str(run / "splits.csv")]) == 0


def test_matrix_on_a_lora_cache_marks_what_the_backbone_saw(lora_run, tmp_path, capsys) -> None:
    from clipforensics.report.figures import matrix_grid, matrix_notes

    run, cache = lora_run
    out = tmp_path / "matrix"
    capsys.readouterr()
    assert evaluate.main(["matrix", "--cache", str(cache), "--heads", "logreg", "--out", str(out),
                          "--bootstrap", "0"]) == 0
    printed = capsys.readouterr().out
    matrix = pd.read_csv(out / "matrix.csv", keep_default_na=False)
    marked = matrix[matrix["backbone"] != ""]
    assert set(marked["backbone"]) == {"backbone saw FaceSwap"}
    assert set(marked["train"]) == {"Deepfakes", "Face2Face", "NeuralTextures", "all others", f"all of {cache.stem}"}
    assert set(matrix.loc[matrix["backbone"] == "", "train"]) == {"FaceSwap"}
    assert printed.count(" *") == len(marked) and "* backbone saw FaceSwap" in printed
    notes = matrix_notes(matrix, matrix_grid(matrix, "frame_auc"))
    assert sum(n == "backbone saw FaceSwap" for line in notes for n in line) == len(marked)
    splits = pd.read_csv(out / "splits.csv", dtype=str, keep_default_na=False)
    lora_splits = pd.read_csv(run / "splits.csv", dtype=str, keep_default_na=False).set_index("video")["split"]
    used = splits[splits["split"] != "unused"].set_index("video")["split"]
    assert (lora_splits[lora_splits != "unused"] == used.reindex(lora_splits[lora_splits != "unused"].index)).all()
    assert evaluate.main(["matrix", "--cache", str(cache), "--out", str(tmp_path / "m1"), "--bootstrap", "0",
                          "--split-seed", "1"]) == 2
    assert "of this protocol's" in capsys.readouterr().err


def test_matrix_on_a_base_cache_marks_nothing_and_writes_splits(tiny_cache, tmp_path) -> None:
    out = tmp_path / "matrix"
    assert evaluate.main(["matrix", "--cache", str(tiny_cache), "--out", str(out), "--bootstrap", "0"]) == 0
    matrix = pd.read_csv(out / "matrix.csv", keep_default_na=False)
    assert (matrix["backbone"] == "").all()
    splits = pd.read_csv(out / "splits.csv", dtype=str, keep_default_na=False)
    assert set(splits["split"]) == {"train", "val", "test"}, "every video is used by some row of the matrix"
