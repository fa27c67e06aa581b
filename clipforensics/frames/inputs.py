"""Which videos prepare_frames.py crops: the layout's video files, by class, --classes and --max-videos."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from clipforensics.core.errors import UserError
from clipforensics.data.layouts import VIDEO_EXTENSIONS, VideoFile, video_files
from clipforensics.frames.settings import FrameSettings

# Written only when named in --classes: the manifest labels every class folder that is not a real class
# (default Real_youtube) as fake, so FF++'s DeepFakeDetection actors would silently become fakes.
OPT_IN_CLASSES = ("Real_actors",)


def _select(by_class: dict[str, list[VideoFile]], classes: tuple[str, ...]) -> dict[str, list[VideoFile]]:
    """The named classes, or every class found except the opt-in ones."""
    missing = [name for name in classes if name not in by_class]
    if missing:
        raise UserError(f"class(es) {', '.join(missing)} not found; available: {', '.join(sorted(by_class))}")
    return {name: by_class[name] for name in (classes or sorted(set(by_class) - set(OPT_IN_CLASSES)))}


def _unreadable(videos: list[VideoFile]) -> list[VideoFile]:
    """Entries named like videos beside a class's videos that are no regular file (a broken link, a FIFO): the
    layout skips them, so they are added here and listed as failed with their reason, never silently dropped."""
    listed = {job.source for job in videos}
    found = []
    for folder in sorted({job.source.parent for job in videos}):
        for path in sorted(folder.iterdir()):
            if (path.suffix.lower() in VIDEO_EXTENSIONS and not path.name.startswith(".") and path not in listed
                    and not path.is_dir() and not path.is_file()):
                found.append(VideoFile(videos[0].class_name, path.stem, path))
    return found


def find_videos(settings: FrameSettings) -> list[VideoFile]:
    """Every input video, in class then name order; duplicate output names are refused."""
    root = Path(settings.videos_root)
    if not root.is_dir():
        raise UserError(f"videos root {root} {'is not a directory' if root.exists() else 'does not exist'}")
    layout, by_class = video_files(root, settings.layout, settings.compression)
    jobs = [job for videos in _select(by_class, settings.classes).values()
            for job in [*videos, *_unreadable(videos)][:settings.max_videos]]
    if not jobs:
        raise UserError(f"no videos ({'/'.join(sorted(e[1:] for e in VIDEO_EXTENSIONS))}) found under {root} "
                        f"(layout {layout.name})")
    names = pd.Series([f"{job.class_name}/{job.video}" for job in jobs])
    twice = sorted(set(names[names.duplicated()]))
    if twice:
        raise UserError(f"two videos would write the same folder: {', '.join(twice[:5])} (same name, other extension?)")
    return jobs
