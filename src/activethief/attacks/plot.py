"""A PNG grid of clean and adversarial images with the substitute's and the target's predictions."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from activethief.attacks.transfer import TransferExamples


def plot_examples(
    examples: TransferExamples,
    path: Path | str,
    *,
    count: int = 10,
    class_names: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """Write a 2 x `count` grid: clean images on top, their adversarial versions below.

    Each panel names the true class (y) or, for a targeted attack, the goal class, and the substitute's
    (S) and the target's (T) prediction; red
    marks a panel where the target is wrong. Images the target classified correctly come first, since
    those are the ones a transfer attack can flip. Uses matplotlib's Agg canvas, no global state.
    """
    n = len(examples.labels)
    correct = np.flatnonzero(examples.target_clean == examples.labels)
    wrong = np.flatnonzero(examples.target_clean != examples.labels)
    chosen = np.concatenate([correct, wrong])[: max(1, min(count, n))]
    names = list(class_names) if class_names is not None else None

    def name(c: int) -> str:
        return names[c] if names is not None and 0 <= c < len(names) else str(c)

    fig = Figure(figsize=(1.25 * len(chosen) + 0.6, 3.8), dpi=100, layout="constrained")
    axes = fig.subplots(2, len(chosen), squeeze=False)
    rows = (
        ("clean", examples.images, examples.substitute_clean, examples.target_clean),
        ("adversarial", examples.adversarial, examples.substitute_adversarial, examples.target_adversarial),
    )
    for r, (label, imgs, sub, tgt) in enumerate(rows):
        for c, i in enumerate(chosen):
            ax = axes[r, c]
            ax.imshow(imgs[i].reshape(imgs.shape[-2], imgs.shape[-1]), cmap="gray", vmin=0.0, vmax=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                head = f"y={name(int(examples.labels[i]))}\n"
            elif examples.goal[i] != examples.labels[i]:  # targeted: show the class it was pushed to
                head = f"goal={name(int(examples.goal[i]))}\n"
            else:
                head = ""
            wrong_target = tgt[i] != examples.labels[i]
            ax.set_title(
                f"{head}S:{name(int(sub[i]))} T:{name(int(tgt[i]))}",
                fontsize=8,
                color="red" if wrong_target else "black",
            )
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out
