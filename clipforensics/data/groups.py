"""Groups of videos that share frame content: the unit every split decision is made on.

A real video is a node (its id); a fake `target_source` joins its two ids, whether or not those
real videos are in the data root (course subsets hold 100 of FF++'s 1000 real videos but fakes made
from many others). Every connected component is one group, keyed by its smallest id: adding videos
of other groups, or the swapped partner `003_000` of `000_003`, leaves every existing key unchanged.
A fake whose name records no ids is its own node (its id without the class), so the same fake name
under several manipulations still forms one group.
"""

from __future__ import annotations

from typing import Iterable

import pandas as pd


class UnionFind:
    """Disjoint sets over string ids, with path halving; `root` is arbitrary, `key` is the smallest id."""

    def __init__(self) -> None:
        self._parent: dict[str, str] = {}
        self._smallest: dict[str, str] = {}

    def add(self, node: str) -> None:
        if node not in self._parent:
            self._parent[node] = node
            self._smallest[node] = node

    def root(self, node: str) -> str:
        parent = self._parent
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    def join(self, nodes: Iterable[str]) -> None:
        nodes = list(nodes)
        for node in nodes:
            self.add(node)
        first = self.root(nodes[0])
        for node in nodes[1:]:
            other = self.root(node)
            if other != first:
                self._parent[other] = first
                self._smallest[first] = min(self._smallest[first], self._smallest[other])

    def key(self, node: str) -> str:
        return self._smallest[self.root(node)]


def video_ids(videos: pd.DataFrame) -> pd.Series:
    """The ids each video is made of: a real video its own id, a fake its target and source ids (those
    known: a Celeb-DF or DFDC fake names only the real video whose frames it is made of)."""
    own = videos["video"].str.partition("/")[2]

    def ids(label: int, target: str, source: str, own_id: str) -> tuple[str, ...]:
        if label == 0:
            return (target or own_id,)
        return tuple(i for i in (target, source) if i) or (own_id,)

    return pd.Series([ids(int(lab), t, s, o) for lab, t, s, o in
                      zip(videos["label"], videos["target"], videos["source"], own)], index=videos.index)


def video_groups(videos: pd.DataFrame) -> pd.Series:
    """Group key of every row of a video table (columns video, label, target, source)."""
    ids = video_ids(videos)
    sets = UnionFind()
    for members in ids:
        sets.join(members)
    return ids.map(lambda members: sets.key(members[0])).astype(str)
