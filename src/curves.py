"""Curves over k (select-k scores, reward variances) or steps: DVC plot data (CSV) and a PNG.

One CSV per role, all with the same columns, so one DVC plot definition (x: k) covers every
game whatever its roles.
"""
from __future__ import annotations

import csv
from pathlib import Path

from src.io_utils import atomic_dir, atomic_path


def write_curve_csvs(out_dir: Path, k_values, columns_by_role: dict[str, dict[str, list]],
                     x_name: str = "k") -> None:
    """``columns_by_role[role][name]`` is one value per x (k, or a training step); None is
    written as an empty cell."""
    with atomic_dir(out_dir) as tmp:
        for role, columns in columns_by_role.items():
            with open(tmp / f"{role}.csv", "w", newline="", encoding="utf-8") as fh:
                writer = csv.writer(fh, lineterminator="\n")
                writer.writerow([x_name, *columns])
                for j, k in enumerate(k_values):
                    writer.writerow([int(k), *(fmt(values[j]) for values in columns.values())])


def fmt(value) -> str:
    return "" if value is None else f"{value:.6g}"


def plot_curves(path: Path, title: str, panels: list[dict]) -> None:
    """Draw one panel per dict: ``curves`` {label: (ks, values)}; ``chosen`` {label: k} as
    dashed verticals and ``levels`` {label: (y, legend)} as dotted horizontals, both in the
    colour of the curve with that label (black otherwise); ``log`` for a symlog y axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 3.2 * len(panels)), squeeze=False)
    for ax, panel in zip(axes[:, 0], panels):
        colors = dict(zip(panel["curves"], plt.cm.tab10.colors))
        for label, (ks, values) in panel["curves"].items():
            ax.plot(ks, values, label=label, color=colors[label], lw=1.4)
        for label, k in panel.get("chosen", {}).items():
            ax.axvline(k, color=colors.get(label, "black"), ls="--", lw=1, label=f"{label}: k = {k}")
        for label, (y, legend) in panel.get("levels", {}).items():
            ax.axhline(y, color=colors.get(label, "black"), ls=":", lw=1.2, label=legend)
        if panel.get("log"):
            ax.set_yscale("symlog", linthresh=1e-4)
        ax.set_ylim(bottom=0)
        ax.set_xlabel("k (clusters)")
        ax.set_ylabel(panel["ylabel"])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90, metadata={"Software": None})
    plt.close(fig)
