"""The training curve of a fine-tuning run (train_curve.png): loss and validation AUC per epoch, from the run's
train_log.csv. Stages render nothing: finetune_lora.py draws it once the stage has written the log."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from clipforensics.report.figures import new_figure, save_figure


def plot_curve(history: pd.DataFrame, best_epoch: int, path: Path) -> Path:
    """Training loss and validation video / frame AUC by epoch, the selected epoch marked."""
    fig = new_figure(9, 3.5)
    loss_ax, auc_ax = fig.subplots(1, 2)
    loss_ax.plot(history["epoch"], history["loss"], marker="o")
    loss_ax.set(xlabel="epoch", ylabel="training loss", title="loss")
    for column, label in (("val_video_auc", "val video AUC"), ("val_frame_auc", "val frame AUC")):
        auc_ax.plot(history["epoch"], history[column], marker="o", label=label)
    auc_ax.axvline(best_epoch, color="grey", linestyle="--", label=f"best epoch {best_epoch}")
    auc_ax.set(xlabel="epoch (0 = untrained)", ylabel="AUC", title="validation", ylim=(0, 1.02))
    auc_ax.legend(loc="lower right")
    return save_figure(fig, path)


def training_curve(log: Path, best_epoch: int, path: Path) -> Path:
    """train_curve.png drawn from a run's training log (the CSV `lora.train.write_log` wrote)."""
    return plot_curve(pd.read_csv(log), best_epoch, path)
