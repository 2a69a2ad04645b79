"""Figure files of both scripts, written atomically: sample grids as PNG and
line plots of curves."""

import io

import numpy as np
from matplotlib.figure import Figure

from utils import write_atomic


def save_png(images, path, upscale=2, **grid_kwargs):
    """A grid of images (make_grid's arguments), each pixel drawn as an
    upscale x upscale block, so that digits stay sharp in print."""
    from torchvision.utils import make_grid, save_image  # torchvision is slow to import

    grid = make_grid(images.detach().cpu(), **grid_kwargs)
    grid = grid.repeat_interleave(upscale, 1).repeat_interleave(upscale, 2)
    buffer = io.BytesIO()
    save_image(grid, buffer, format="png")
    write_atomic(path, buffer.getvalue())


def save_curves(path, panels, xlabel, title=None, width=1, x=None):
    """One panel per (ylabel, {label: values}), each curve a moving average
    over `width` points, against x (default 1, 2, ...)."""
    fig = Figure(figsize=(4.8, 0.6 + 2.3 * len(panels)))
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (ylabel, curves) in zip(axes, panels, strict=False):
        for label, values in curves.items():
            smooth = np.convolve(np.asarray(values, float), np.ones(width) / width, "valid")
            xs = np.arange(1, len(values) + 1) if x is None else np.asarray(x)
            ax.plot(xs[width - 1 :], smooth, label=label)
        ax.set_ylabel(ylabel)
        ax.legend()
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel(xlabel)
    axes[0].set_title(title, fontsize="medium")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    write_atomic(path, buffer.getvalue())
