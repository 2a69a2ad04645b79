"""Figure files of both scripts: sample grids as PNG and line plots of
curves, written atomically (utils.write_atomic)."""
import io

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from utils import RunError, write_atomic


def save_png(images, path, upscale=1, **grid_kwargs):
    """A grid of images (make_grid's arguments), each pixel repeated
    upscale x upscale times (nearest neighbour: sharp in print, same pixels)."""
    from torchvision.utils import make_grid, save_image

    if not torch.isfinite(images).all():
        raise RunError(f"refusing to write {path}: the image holds NaN or infinity")
    grid = make_grid(images.detach().cpu(), **grid_kwargs)
    grid = grid.repeat_interleave(upscale, 1).repeat_interleave(upscale, 2)
    buffer = io.BytesIO()
    save_image(grid, buffer, format="png")
    write_atomic(path, buffer.getvalue())


def save_curves(path, panels, xlabel, title=None, width=1, start=1, y_from=0):
    """Line plots against x = start, start + 1, ...: one panel per (ylabel,
    {label: values}) pair, each curve smoothed by a moving average over
    `width` (NaN values are left out). With y_from > 0 the y-axis spans the
    values from x = start + y_from on, so that a far-off start does not
    flatten the rest."""
    fig = Figure(figsize=(4.8, 0.6 + 2.3 * len(panels)))  # printed about this size
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (ylabel, curves) in zip(axes, panels):
        for label, values in curves.items():
            smooth = np.convolve(np.asarray(values, dtype=float), np.ones(width) / width,
                                 mode="valid")
            ax.plot(np.arange(len(smooth)) + start + width - 1, smooth, label=label)
        if y_from:
            shown = np.concatenate([np.asarray(v[y_from:], dtype=float) for v in curves.values()])
            low, high = np.nanmin(shown), np.nanmax(shown)
            margin = 0.05 * (high - low) or 1.0
            ax.set_ylim(low - margin, high + margin)
        ax.set_ylabel(ylabel)
        ax.legend()
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel(xlabel)
    axes[-1].xaxis.set_major_locator(MaxNLocator(5))  # six-digit iterations stay apart
    axes[0].set_title(title, fontsize="medium")
    save_figure(fig, path)


def save_figure(fig, path):
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    write_atomic(path, buffer.getvalue())
