"""Shared helpers for the patchmap tests: the package on sys.path, an
independent numpy reference for the patch matrix, bit-exact comparison, and
peak-RSS measurement from /proc."""

import os
import sys

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import patchmap  # noqa: E402

BACKENDS = ["auto", "uffd", "sigsegv", "eager"]

NUMPY_PAD = {"zero": "constant", "constant": "constant", "edge": "edge",
             "reflect": "reflect", "symmetric": "symmetric", "wrap": "wrap"}


def pad(x, pads, mode, value=0):
    """numpy.pad, except "wrap" by index arithmetic: numpy before 1.25 is not
    periodic when a pad exceeds the axis (numpy issues 22464, 24436)."""
    if mode == "wrap":
        for axis, (b, a) in enumerate(pads):
            x = np.take(x, np.arange(-b, x.shape[axis] + a) % x.shape[axis], axis=axis)
        return x
    kw = {"constant_values": value if mode == "constant" else 0} \
        if NUMPY_PAD[mode] == "constant" else {}
    return np.pad(x, pads, mode=NUMPY_PAD[mode], **kw)


def reference(img, window, step=1, dilation=1, pads=None, pad_mode="zero", pad_value=0,
              dtype=np.float32, channel_axis=None, order="window", affine=None):
    """The patch matrix by numpy alone: numpy.pad, then sliding_window_view of
    the dilated extent, strided by step (positions) and dilation (samples),
    reshaped (a copy) and converted."""
    x = np.asarray(img)
    if channel_axis is not None:
        x = np.moveaxis(x, channel_axis, -1)
    nsp = x.ndim - (channel_axis is not None)
    per = lambda v: (v,) * nsp if np.ndim(v) == 0 else tuple(v)  # noqa: E731
    window, step, dilation = per(window), per(step), per(dilation)
    if pads is not None:
        x = pad(x, list(pads) + ([(0, 0)] if channel_axis is not None else []), pad_mode,
                pad_value)
    extent = tuple((k - 1) * d + 1 for k, d in zip(window, dilation))
    v = sliding_window_view(x, extent, axis=tuple(range(nsp)))
    # v: (positions..., [c], extent...)
    index = tuple(slice(None, None, s) for s in step)
    index += (slice(None),) * (channel_axis is not None)
    index += tuple(slice(None, None, d) for d in dilation)
    v = v[index]
    if channel_axis is not None and order == "window":
        v = np.moveaxis(v, nsp, -1)  # (positions..., window..., c)
    npos = int(np.prod(v.shape[:nsp]))
    out_dtype = x.dtype if dtype is None else np.dtype(dtype)
    with np.errstate(over="ignore", invalid="ignore"):  # float64 max -> float32 inf, as C
        m = v.reshape(npos, -1).astype(out_dtype)
        if affine is not None:
            m = m * out_dtype.type(affine[0]) + out_dtype.type(affine[1])
    return m


def assert_bits_equal(X, R):
    """Same shape, dtype and bytes (NaN payloads and signed zeros included)."""
    assert X.shape == R.shape, (X.shape, R.shape)
    assert X.dtype == R.dtype, (X.dtype, R.dtype)
    a = np.ascontiguousarray(X).view(np.uint8)
    b = np.ascontiguousarray(R).view(np.uint8)
    if not np.array_equal(a, b):
        bad = np.argwhere(np.ascontiguousarray(X).view(np.uint8) != b)[:5]
        raise AssertionError("patch matrices differ, first at byte %s" % bad.tolist())


def random_image(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    if dt.kind == "f":
        x = rng.standard_normal(shape).astype(dt) * 100
        flat = x.reshape(-1)
        if flat.size >= 8:  # the awkward values too
            flat[:6] = [np.nan, np.inf, -np.inf, -0.0, np.finfo(dt).max, np.finfo(dt).tiny]
        return x
    info = np.iinfo(dt)
    return rng.integers(info.min, info.max, size=shape, dtype=dt, endpoint=True)


def status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def reset_peak_rss():
    """VmHWM := VmRSS (Linux >= 4.0); returns the RSS in bytes."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return status_kib("VmRSS") * 1024


def peak_rss():
    return status_kib("VmHWM") * 1024


def pytest_report_header(config):
    try:
        return "libpatchmap %s from %s" % (patchmap.library_version(), patchmap.library_path())
    except OSError as e:
        return "libpatchmap not loaded: %s" % e
