"""The training log (``log.jsonl``) and its pictures: ``loss.png`` (the loss curve) and
``validation.png`` (the validation scores)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from inpaint import atomic


class History:
    """Appends one JSON object per line: ``{"step", "loss", "lr", …}`` and validation records.

    On resume, records beyond the resumed step (written by the interrupted run after its last
    checkpoint) are dropped, because those steps are about to be trained again.
    """

    def __init__(self, path: Path, resume_step: int = 0) -> None:
        self.path = Path(path)
        self.records: list[dict[str, Any]] = []
        if self.path.is_file():
            for line in self.path.read_text().splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:  # a line cut short by a kill
                    continue
                if int(record.get("step", 0)) <= resume_step:
                    self.records.append(record)
        self._rewrite()

    def _rewrite(self) -> None:
        atomic.write_text(self.path, "".join(json.dumps(r) + "\n" for r in self.records))

    def log(self, **record: Any) -> None:
        """Append a record and flush it to disk."""
        self.records.append(record)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def plot(self, path: Path) -> Path:
        """Draw the training loss and its running mean against steps into ``path`` (PNG)."""
        from matplotlib.figure import Figure

        train = [(r["step"], r["loss"]) for r in self.records if "loss" in r]
        # A Figure of its own, never pyplot: pyplot's global state (and matplotlib.use) would
        # switch the backend of a notebook that trains from Python.
        fig = Figure(figsize=(7, 4), dpi=100)
        ax = fig.subplots()
        if train:
            steps, losses = zip(*train)
            ax.plot(steps, losses, color="tab:blue", alpha=0.35, linewidth=0.8, label="loss")
            window = max(1, len(losses) // 20)
            smooth = [
                sum(losses[max(0, i - window + 1) : i + 1]) / len(losses[max(0, i - window + 1) : i + 1])
                for i in range(len(losses))
            ]
            ax.plot(steps, smooth, color="tab:blue", linewidth=1.6, label=f"running mean ({window})")
            ax.legend(loc="upper right")
        ax.set_xlabel("step")
        ax.set_ylabel("training loss")
        ax.grid(alpha=0.3)
        return _save(fig, path)

    def plot_validation(self, path: Path) -> Path | None:
        """Draw each validation score against steps, one panel per metric, into ``path`` (PNG).

        Hole PSNR (dB, higher is better), hole SSIM (higher is better) and hole LPIPS (lower is
        better; when it was computed). Returns ``None`` and writes nothing without validation records.
        """
        from matplotlib.figure import Figure

        present = [(key, title) for key, title in VALIDATION_PANELS if any(key in r for r in self.records)]
        if not present:
            return None
        fig = Figure(figsize=(4 * len(present), 3.5), dpi=100)
        axes = fig.subplots(1, len(present), squeeze=False)[0]
        for ax, (key, title) in zip(axes, present):
            points = [(r["step"], r[key]) for r in self.records if key in r]
            steps, values = zip(*points)
            ax.plot(steps, values, "o-", color="tab:orange", markersize=3)
            ax.set_title(title)
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
        return _save(fig, path)


#: Validation scores in ``log.jsonl`` and their panel titles in ``validation.png``.
VALIDATION_PANELS = (
    ("val_psnr_hole", "hole PSNR (dB, higher is better)"),
    ("val_ssim_hole", "hole SSIM (higher is better)"),
    ("val_lpips_hole", "hole LPIPS (lower is better)"),
)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)
