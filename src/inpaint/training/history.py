"""The training log (``log.jsonl``) and its loss-curve picture (``loss.png``)."""

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
        """Draw training loss (and its running mean) and validation hole PSNR against steps."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        train = [(r["step"], r["loss"]) for r in self.records if "loss" in r]
        val = [(r["step"], r["val_psnr_hole"]) for r in self.records if "val_psnr_hole" in r]
        fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
        if train:
            steps, losses = zip(*train)
            ax.plot(steps, losses, color="tab:blue", alpha=0.35, linewidth=0.8, label="loss")
            window = max(1, len(losses) // 20)
            smooth = [sum(losses[max(0, i - window + 1): i + 1]) / len(losses[max(0, i - window + 1): i + 1])
                      for i in range(len(losses))]
            ax.plot(steps, smooth, color="tab:blue", linewidth=1.6, label=f"running mean ({window})")
        ax.set_xlabel("step")
        ax.set_ylabel("training loss")
        ax.grid(alpha=0.3)
        if val:
            twin = ax.twinx()
            steps, psnr = zip(*val)
            twin.plot(steps, psnr, "o-", color="tab:orange", label="validation hole PSNR (dB)")
            twin.set_ylabel("hole PSNR (dB)")
            twin.legend(loc="upper right")
        ax.legend(loc="upper left")
        fig.tight_layout()
        with atomic.atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
        plt.close(fig)
        return Path(path)
