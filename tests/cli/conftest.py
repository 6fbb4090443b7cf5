"""Shared by the patchmap CLI tests: the binary (PATCHMAP_EXE), running it,
writing images in every input format, and an independent numpy reference of
the patch matrix and of the filter responses."""

import os
import subprocess

import pytest

np = pytest.importorskip("numpy")
from numpy.lib.stride_tricks import sliding_window_view  # noqa: E402

EXE = os.path.abspath(os.environ["PATCHMAP_EXE"]) if os.environ.get("PATCHMAP_EXE") else ""


def pytest_sessionfinish(session, exitstatus):
    # Everything skipped (no numpy, no binary) is a skip, not a pass.
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and exitstatus == 0:
        skipped = len(reporter.stats.get("skipped", []))
        passed = len(reporter.stats.get("passed", []))
        if skipped and not passed:
            session.exitstatus = 77


@pytest.fixture(scope="session")
def exe():
    if not EXE or not os.access(EXE, os.X_OK):
        pytest.skip("PATCHMAP_EXE does not name the patchmap binary")
    return EXE


def run(exe, *args, check=True, env=None):
    """Runs patchmap; with check, asserts success and no stderr."""
    p = subprocess.run([exe, *map(str, args)], capture_output=True, text=True, env=env,
                       timeout=300)
    if check:
        assert p.returncode == 0, p.stderr
        assert p.stderr == "", p.stderr
    return p


# ------------------------------------------------------------------ images

def write_npy(path, arr, fortran=False):
    arr = np.asfortranarray(arr) if fortran else np.ascontiguousarray(arr)
    np.save(path, arr)
    return path


def write_pnm(path, arr, maxval=None, comments=False):
    """Binary PGM (2-D) or PPM (H, W, 3), 8 or 16 bit (big-endian)."""
    h, w = arr.shape[:2]
    magic = b"P5" if arr.ndim == 2 else b"P6"
    if maxval is None:
        maxval = 255 if arr.dtype == np.uint8 else 65535
    if comments:
        head = magic + b"\n# a comment\n%d # width\n%d\n# maxval next\n%d\n" % (w, h, maxval)
    else:
        head = magic + b"\n%d %d\n%d\n" % (w, h, maxval)
    data = arr.astype(">u2" if maxval > 255 else np.uint8).tobytes()
    with open(path, "wb") as f:
        f.write(head + data)
    return path


def write_raw(path, arr, dtype=None):
    with open(path, "wb") as f:
        f.write(np.ascontiguousarray(arr).astype(dtype or arr.dtype).tobytes())
    return path


# ------------------------------------------------------------------ reference

def pad(x, pads, mode, value=0):
    """numpy.pad in the library's meanings; wrap by index arithmetic, as
    numpy 1.24 is not periodic when a pad exceeds the axis."""
    if mode == "wrap":
        for axis, (b, a) in enumerate(pads):
            x = np.take(x, np.arange(-b, x.shape[axis] + a) % x.shape[axis], axis=axis)
        return x
    if mode in ("zero", "constant"):
        return np.pad(x, pads, mode="constant",
                      constant_values=value if mode == "constant" else 0)
    return np.pad(x, pads, mode=mode)


def patches(img, window, step=None, dilation=None, pads=None, mode="zero", value=0,
            channels=False, order="window", dtype=np.float32):
    """The patch matrix: numpy.pad, sliding_window_view over the dilated
    extent, positions strided by step and samples by dilation, reshaped and
    converted with astype."""
    ns = img.ndim - (1 if channels else 0)
    step = step or (1,) * ns
    dilation = dilation or (1,) * ns
    x = img
    if pads is not None:
        x = pad(x, list(pads) + ([(0, 0)] if channels else []), mode, value)
    extent = tuple((k - 1) * d + 1 for k, d in zip(window, dilation))
    v = sliding_window_view(x, extent, axis=tuple(range(ns)))
    v = v[tuple(slice(None, None, s) for s in step) + (slice(None),) * channels
          + tuple(slice(None, None, d) for d in dilation)]
    if channels and order == "window":
        v = np.moveaxis(v, ns, -1)
    out_shape = v.shape[:ns]
    return v.reshape(int(np.prod(out_shape)), -1).astype(dtype), out_shape


def correlate(img, filters, window, step=None, dilation=None, pads=None, mode="zero",
              value=0, channels=False):
    """Filter responses by explicit correlation in float64, without the patch
    matrix: for each window offset, the shifted (strided) image times the
    tap, summed. filters: (N, *window[, C]). Returns (N, *out_shape)."""
    ns = img.ndim - (1 if channels else 0)
    step = step or (1,) * ns
    dilation = dilation or (1,) * ns
    x = img.astype(np.float64)
    if pads is not None:
        x = pad(x, list(pads) + ([(0, 0)] if channels else []), mode, value)
    extent = [(k - 1) * d + 1 for k, d in zip(window, dilation)]
    out_shape = tuple((x.shape[a] - extent[a]) // step[a] + 1 for a in range(ns))
    out = np.zeros((len(filters),) + out_shape)
    for off in np.ndindex(*window):
        sl = tuple(slice(o * d, o * d + (n - 1) * s + 1, s)
                   for o, d, n, s in zip(off, dilation, out_shape, step))
        shifted = x[sl]  # (*out_shape[, C])
        for n, f in enumerate(filters):
            tap = np.asarray(f, np.float64)[off]
            out[n] += (shifted * tap).sum(axis=-1) if channels else shifted * tap
    return out
