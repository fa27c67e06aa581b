"""A data set's own split in the protocol: Celeb-DF's test list, DFDC-preview's sets, a CSV's split column.

When a cache's manifest carries `official_split` (data.layouts) and no --split-file is given, the
protocol keeps the data set's split: a group of videos with an officially listed test (or val, train)
video takes that split, the latest one when its videos are listed in several; groups with no listed
video are hashed between train and val only, in the --real-split's train:val proportion, so the
official test set stays exactly the listed videos. In a group that went to test, only the listed test
videos are used; a video listed in another split than its group's is not used at all, so no frame
content of a test video is ever trained on or selected on.
"""

from __future__ import annotations

from typing import Callable

import pandas as pd

from clipforensics.core.errors import UserError
from clipforensics.data.manifest import OFFICIAL_SPLIT

SPLIT_ORDER = ("train", "val", "test")
Hasher = Callable[[pd.DataFrame, tuple[float, float, float]], tuple[pd.Series, list]]
"""(video table with groups, train/val/test shares) -> (split of each group, notes of groups moved)."""


def official_by_video(manifest: pd.DataFrame) -> pd.Series:
    """video -> its official split ('' when unlisted); a video listed in two splits is an error."""
    per_video = manifest.groupby("video")[OFFICIAL_SPLIT].agg(lambda s: tuple(sorted(set(s))))
    mixed = per_video[per_video.map(len) > 1]
    if len(mixed):
        raise UserError(f"video {mixed.index[0]} has frames in several official splits: {', '.join(mixed.iloc[0])}")
    return per_video.map(lambda s: s[0])


def official_group_splits(manifest: pd.DataFrame, videos: pd.DataFrame, shares: tuple[float, float, float],
                          hashed: Hasher) -> tuple[pd.Series, list, set[str]]:
    """(split of each group, notes from hashing, videos not to use) under the data set's official split."""
    official = videos["video"].map(official_by_video(manifest)).fillna("")
    listed = videos.assign(official=official)[official != ""]
    group_split = listed.groupby("group")["official"].agg(lambda s: max(s, key=SPLIT_ORDER.index)).to_dict()
    free = videos[~videos["group"].isin(group_split)]
    notes: list = []
    if len(free):
        train, val = shares[0], shares[1]
        if train + val <= 0:
            raise UserError("--real-split gives train and val no share; the data set's official split already "
                            "decides test")
        hashed_split, notes = hashed(free, (train / (train + val), val / (train + val), 0.0))
        group_split.update(hashed_split.to_dict())
    split_of_group = videos["group"].map(group_split)
    unused = (official != "") & (official != split_of_group)
    unused |= (split_of_group == "test") & (official != "test")
    return pd.Series(group_split, dtype=object), notes, set(videos.loc[unused, "video"])
