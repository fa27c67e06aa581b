"""Scoring prepared inputs: frames of consecutive inputs share batches; an input's score is the evaluator's aggregate.

Batches mix inputs so a folder of single images runs at the batch size, not one forward per image; an input is
handed on as soon as its last frame is scored, so only a batch's worth of inputs waits in memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections import deque
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from clipforensics.detect.inputs import OK, Prepared
from clipforensics.measure.metrics import AGGREGATORS

FAKE, REAL = "fake", "real"


@dataclass
class Scored:
    """A prepared input with its frame scores, video score and decision (None when it could not be scored)."""

    prepared: Prepared
    frame_scores: np.ndarray
    score: float | None
    decision: str | None


def decide(score: float, threshold: float) -> str:
    """The evaluator's rule: fake iff score >= threshold."""
    return FAKE if score >= threshold else REAL


def aggregate(frame_scores: np.ndarray, how: str) -> float:
    return float(AGGREGATORS.get(how)(frame_scores))


class Batcher:
    """Frames of consecutive inputs in shared batches; inputs come out in order once all their frames are scored."""

    def __init__(self, score_images: Callable[[torch.Tensor], np.ndarray], batch_size: int, threshold: float,
                 how: str = "mean") -> None:
        aggregate(np.ones(1), how)
        self.score_images, self.batch_size, self.threshold, self.how = score_images, batch_size, threshold, how
        self.queue: deque[Prepared] = deque()  # inputs not handed on yet, in order
        self.unscored: list[torch.Tensor] = []  # their frames still to score, in order
        self.n_unscored = 0
        self.scored = np.zeros(0)  # scores of the queue's frames, in order

    def add(self, item: Prepared) -> list[Scored]:
        self.queue.append(item)
        if item.status == OK:
            self.unscored.append(item.pixels)
            self.n_unscored += item.n_frames
        while self.n_unscored >= self.batch_size:
            self._forward(self.batch_size)
        return self._ready()

    def close(self) -> list[Scored]:
        if self.n_unscored:
            self._forward(self.n_unscored)
        return self._ready()

    def _forward(self, n: int) -> None:
        flat = torch.cat(self.unscored) if len(self.unscored) > 1 else self.unscored[0]
        self.scored = np.concatenate([self.scored, self.score_images(flat[:n])])
        self.unscored = [flat[n:]] if n < len(flat) else []
        self.n_unscored -= n

    def _ready(self) -> list[Scored]:
        out, used = [], 0
        while self.queue and used + self.queue[0].n_frames <= len(self.scored):
            item = self.queue.popleft()
            frame_scores = self.scored[used:used + item.n_frames]
            used += item.n_frames
            if item.status != OK:
                out.append(Scored(item, frame_scores, None, None))
                continue
            video = aggregate(frame_scores, self.how)
            out.append(Scored(item, frame_scores, video, decide(video, self.threshold)))
        self.scored = self.scored[used:]
        return out


def score_stream(prepared: Iterable[Prepared], batcher: Batcher) -> Iterator[Scored]:
    """Every input scored, in the order given."""
    for item in prepared:
        yield from batcher.add(item)
    yield from batcher.close()
