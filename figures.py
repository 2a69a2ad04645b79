"""Figure files of both scripts, written atomically: sample grids as PNG and
line plots of curves."""

import io

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from utils import write_atomic


def save_png(images, path, nrow=8, padding=2, pad_value=0.0, upscale=2):
    """Images in [0, 1], (N, C, H, W), as a grid of nrow columns framed by `padding`
    pixels (one image as it is), each pixel an upscale x upscale block so that
    digits stay sharp in print. Pillow writes it: torchvision takes 2 s to import."""
    from PIL import Image

    images = images.detach().cpu().float().reshape(-1, *images.shape[-3:])
    (n, c, h, w), cols = images.shape, min(nrow, len(images))
    rows, padding = -(-n // cols), padding if n > 1 else 0
    grid = torch.full((rows * cols, c, h + padding, w + padding), pad_value)
    grid[:n, :, padding:, padding:] = images
    grid = grid.view(rows, cols, c, h + padding, w + padding).permute(2, 0, 3, 1, 4)
    grid = F.pad(
        grid.reshape(c, rows * (h + padding), -1), (0, padding, 0, padding), value=pad_value
    )
    pixels = grid.expand(3, -1, -1).mul(255).add(0.5).clamp(0, 255).byte().permute(1, 2, 0)
    pixels = pixels.repeat_interleave(upscale, 0).repeat_interleave(upscale, 1)
    buffer = io.BytesIO()
    Image.fromarray(pixels.numpy()).save(buffer, format="png")
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
