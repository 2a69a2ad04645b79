"""The matrix products of a training step, recorded and timed alone.

`record(step)` runs `step()` once and notes every matrix product that reaches
the dispatcher (mm, addmm, bmm: forward and backward, as autograd issues
them) with its shapes and strides; `time_products` then replays exactly those
products on random tensors. Their time is what a training pass cannot go
below, whatever the framework does around them.
"""
import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode

PRODUCTS = {torch.ops.aten.mm.default, torch.ops.aten.addmm.default,
            torch.ops.aten.bmm.default}


class _Recorder(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in PRODUCTS:
            self.calls.append((func, [(a.shape, a.stride()) if torch.is_tensor(a) else a
                                      for a in args]))
        return func(*args, **(kwargs or {}))


def record(step):
    """The matrix products issued by one call of step()."""
    with _Recorder() as recorder:
        step()
    return recorder.calls


def _operands(calls):
    return [(func, [torch.empty_strided(*a).normal_() if isinstance(a, tuple) else a
                    for a in args]) for func, args in calls]


def time_products(calls, repeats, best_of=3):
    """Seconds for `repeats` replays of the recorded products (best of
    best_of), on operands allocated once."""
    operands = _operands(calls)
    best = float("inf")
    for _ in range(best_of):
        started = time.perf_counter()
        for _ in range(repeats):
            for func, args in operands:
                func(*args)
        best = min(best, time.perf_counter() - started)
    return best


def shortfall(calls, rate, repeats=200, top=5):
    """The `top` products that lose the most time against `rate` (GFLOP/s),
    each replayed alone: its shapes, its achieved rate and the microseconds
    it loses per call."""
    rows = []
    for func, args in calls:
        seconds = time_products([(func, args)], repeats) / repeats
        work = flops([(func, args)])
        operands = [a for a in args if isinstance(a, tuple)]
        rows.append({"op": func.__name__.split(".")[0],
                     "shapes": [list(shape) for shape, _ in operands],
                     "strides": [list(stride) for _, stride in operands],
                     "gflops": work / seconds / 1e9,
                     "lost_us": (seconds - work / rate / 1e9) * 1e6})
    return sorted(rows, key=lambda row: -row["lost_us"])[:top]


def peak_gflops(n=2048, repeats=10):
    """The machine's float32 rate on one large square product (best of repeats)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - started)
    return 2 * n ** 3 / best / 1e9


def flops(calls):
    """Floating-point operations of the recorded products."""
    total = 0
    for func, args in calls:
        a, b = (args[1], args[2]) if func is torch.ops.aten.addmm.default else args[:2]
        (shape_a, _), (shape_b, _) = a, b
        total += 2 * shape_a.numel() * shape_b[-1]
    return total
