"""patchmap apply against an explicit correlation in numpy (float64, no
patch matrix): random filters within float tolerance, integer filters on
integer images exactly."""

import json
import os

import numpy as np
import pytest

from conftest import correlate, run, write_npy, write_pnm, write_raw

RNG = np.random.default_rng(99)


def apply(exe, tmp_path, image, *opts):
    out = tmp_path / "resp.npy"
    run(exe, "apply", image, "--out", out, "--quiet", *opts)
    return np.load(out)


def close(got, want, img, filters, rtol=1e-5):
    """float32 GEMM against float64: the error of a sum of products is
    bounded by a few ulps of sum |f| |x|."""
    scale = np.abs(np.asarray(filters, np.float64)).reshape(len(filters), -1).sum(axis=1)
    scale = scale * float(np.abs(img.astype(np.float64)).max() or 1)
    assert got.shape == want.shape
    err = np.abs(got - want).reshape(len(filters), -1).max(axis=1)
    assert (err <= rtol * scale).all(), (err, scale)


def int_filters(n, shape):
    return RNG.integers(-8, 9, (n,) + tuple(shape)).astype(np.float32)


def test_random_filters_pgm(exe, tmp_path):
    img = RNG.integers(0, 256, (40, 37)).astype(np.uint8)
    path = write_pnm(tmp_path / "img.pgm", img, comments=True)
    saved = tmp_path / "filters.npy"
    got = apply(exe, tmp_path, path, "--window", "6x5", "--random", "7", "--seed", "3",
                "--save-filters", saved)
    f = np.load(saved)
    assert f.shape == (7, 30) and f.dtype == np.float32
    assert (f >= -1).all() and (f < 1).all() and len(np.unique(f)) > 200
    want = correlate(img, f.reshape(7, 6, 5), (6, 5))
    assert got.dtype == np.float32 and got.shape == (7, 35, 33)
    close(got, want, img, f)
    # the seed decides the filters
    again = tmp_path / "again.npy"
    apply(exe, tmp_path, path, "--window", "6x5", "--random", "7", "--seed", "3",
          "--save-filters", again)
    assert np.array_equal(np.load(again), f)
    other = tmp_path / "other.npy"
    apply(exe, tmp_path, path, "--window", "6x5", "--random", "7", "--seed", "4",
          "--save-filters", other)
    assert not np.array_equal(np.load(other), f)


@pytest.mark.parametrize("maxval", [255, 65535])
def test_integer_filters_exact(exe, tmp_path, maxval):
    """Integer taps on integer pixels: every product and partial sum is an
    integer below 2^24, so float32 must be exact."""
    dtype = np.uint8 if maxval < 256 else np.uint16
    img = RNG.integers(0, min(maxval, 255) + 1, (33, 29)).astype(dtype)
    path = write_pnm(tmp_path / "img.pgm", img, maxval=maxval)
    f = int_filters(5, (4, 7))
    fpath = write_npy(tmp_path / "f.npy", f)
    got = apply(exe, tmp_path, path, "--window", "4x7", "--filters", fpath)
    assert np.array_equal(got, correlate(img, f, (4, 7)))


@pytest.mark.parametrize("fdtype", ["int64", "uint64", "bool", "float16", "int8"])
def test_filters_of_numpy_default_dtypes(exe, tmp_path, fdtype):
    """numpy's default int64 filters (and bool, float16, ...) are converted
    as astype converts them: an int64 bank once gave all zeros."""
    img = RNG.integers(0, 256, (19, 23)).astype(np.int64)
    path = write_npy(tmp_path / "img.npy", img)
    f = np.abs(int_filters(3, (3, 4)))  # unsigned dtypes too
    f = f % 2 == 1 if fdtype == "bool" else f
    f = f.astype(fdtype)
    fpath = write_npy(tmp_path / "f.npy", f)
    got = apply(exe, tmp_path, path, "--window", "3x4", "--filters", fpath)
    want = correlate(img, f.astype(np.float64), (3, 4))
    assert np.abs(want).max() > 0 and np.array_equal(got, want)


@pytest.mark.parametrize("order", ["window", "channel"])
def test_ppm_shaped_filters(exe, tmp_path, order):
    """(N, h, w, c) filters follow the window, whatever the column order."""
    img = RNG.integers(0, 256, (21, 24, 3)).astype(np.uint8)
    path = write_pnm(tmp_path / "img.ppm", img)
    f = int_filters(4, (3, 5, 3))
    fpath = write_npy(tmp_path / "f.npy", f, fortran=True)
    got = apply(exe, tmp_path, path, "--window", "3x5", "--filters", fpath, "--order", order)
    assert np.array_equal(got, correlate(img, f, (3, 5), channels=True))


def test_flat_filters_follow_column_order(exe, tmp_path):
    """(N, K) filters are rows in the matrix's column order."""
    img = RNG.integers(0, 256, (15, 16, 2)).astype(np.uint8)
    path = write_npy(tmp_path / "img.npy", img)
    f = int_filters(3, (4, 3, 2))
    want = correlate(img, f, (4, 3), channels=True)
    flat_window = write_npy(tmp_path / "fw.npy", f.reshape(3, -1))
    flat_channel = write_npy(tmp_path / "fc.npy", np.moveaxis(f, 3, 1).reshape(3, -1))
    assert np.array_equal(apply(exe, tmp_path, path, "--window", "4x3", "--filters",
                                flat_window), want)
    assert np.array_equal(apply(exe, tmp_path, path, "--window", "4x3", "--filters",
                                flat_channel, "--order", "channel"), want)


def test_f64(exe, tmp_path):
    img = RNG.standard_normal((25, 22)).astype(np.float64)
    path = write_npy(tmp_path / "img.npy", img)
    f = RNG.standard_normal((6, 5, 4))
    fpath = write_npy(tmp_path / "f.npy", f)
    got = apply(exe, tmp_path, path, "--window", "5x4", "--filters", fpath, "--dtype", "f64")
    assert got.dtype == np.float64
    close(got, correlate(img, f, (5, 4)), img, f, rtol=1e-13)


@pytest.mark.parametrize("mode", ["zero", "constant:3", "edge", "reflect", "symmetric", "wrap"])
def test_step_dilation_padding(exe, tmp_path, mode):
    img = RNG.integers(0, 256, (26, 30)).astype(np.uint8)
    path = write_raw(tmp_path / "img.raw", img)
    f = int_filters(3, (3, 4))
    fpath = write_npy(tmp_path / "f.npy", f.astype(np.int16))  # any readable dtype
    name, _, value = mode.partition(":")
    got = apply(exe, tmp_path, path, "--shape", "26x30", "--window", "3x4", "--step", "2x3",
                "--dilation", "3x2", "--pad-mode", name, *(["--pad-value", value] if value else []),
                "--pad", "4,2x5", "--filters", fpath)
    want = correlate(img, f, (3, 4), step=(2, 3), dilation=(3, 2), pads=[(4, 4), (2, 5)],
                     mode=name, value=int(value or 0))
    assert np.array_equal(got, want)


def test_volume(exe, tmp_path):
    img = RNG.integers(0, 256, (9, 8, 10)).astype(np.uint8)
    path = write_npy(tmp_path / "vol.npy", img)
    f = int_filters(2, (3, 2, 4))
    fpath = write_npy(tmp_path / "f.npy", f)
    got = apply(exe, tmp_path, path, "--window", "3x2x4", "--filters", fpath)
    assert got.shape == (2, 7, 7, 7)
    assert np.array_equal(got, correlate(img, f, (3, 2, 4)))


@pytest.mark.parametrize("backend", ["uffd", "sigsegv", "eager"])
def test_backends_small_budget(exe, tmp_path, backend):
    """Many blocks and evictions: a 3.6 MB matrix under a 256 KiB budget."""
    img = RNG.integers(0, 256, (70, 80)).astype(np.uint8)
    path = write_npy(tmp_path / "img.npy", img)
    f = int_filters(9, (12, 12))
    fpath = write_npy(tmp_path / "f.npy", f)
    out = tmp_path / "r.npy"
    rep = json.loads(run(exe, "apply", path, "--window", "12", "--filters", fpath, "--out", out,
                         "--backend", backend, "--budget", "256K", "--chunk", "32K",
                         "--blas-threads", "2", "--json").stdout)
    assert np.array_equal(np.load(out), correlate(img, f, (12, 12)))
    assert rep["output"]["shape"] == [9, 59, 69]
    assert rep["lazy"]["backend"] == backend
    if backend != "eager":
        assert rep["lazy"]["evictions"] > 0
        assert rep["lazy"]["peak_resident_bytes"] <= 256 << 10
    assert rep["block_rows"] < 59 * 69  # several GEMM blocks


# The default computes each block of rows with pm_matrix_read and one BLAS
# thread per worker (backend none); an explicit lazy backend multiplies the
# mapping. Cases: (image, window options, rows option, dtype).
STREAMED = [
    ("u8", ["--window", "7x5"], None, "f32"),
    ("u8", ["--window", "16x16", "--step", "2x3"], "range", "f32"),
    ("f64c", ["--window", "4x3", "--channel-axis", "2", "--order", "channel"], "rows", "f64"),
    ("u8", ["--window", "5x6", "--dilation", "2", "--pad", "3", "--pad-mode", "reflect"], "rows",
     "f64"),
    ("f64c", ["--window", "3x3", "--channel-axis", "2"], None, "f32"),
]


def streamed_case(tmp_path, kind, wopts, rows):
    if kind == "u8":
        img = RNG.integers(0, 256, (150, 257)).astype(np.uint8)
    else:
        img = RNG.integers(-50, 50, (61, 73, 3)).astype(np.float64)
    path = write_npy(tmp_path / "img.npy", img)
    opts = list(wopts)
    window = tuple(int(v) for v in wopts[1].split("x"))
    kw = {}
    for key, name in (("--step", "step"), ("--dilation", "dilation")):
        if key in opts:
            v = opts[opts.index(key) + 1]
            kw[name] = tuple(int(v) for _ in window) if "x" not in v else \
                tuple(int(s) for s in v.split("x"))
    if "--pad" in opts:
        p = int(opts[opts.index("--pad") + 1])
        kw["pads"] = [(p, p)] * len(window)
        kw["mode"] = opts[opts.index("--pad-mode") + 1]
    return img, path, opts, window, kw


def select(want, rows, tmp_path):
    """The reference responses of the selected windows, and the options."""
    flat = want.reshape(len(want), -1)
    if rows == "range":
        return flat[:, 17:flat.shape[1] - 5], ["--row-range", "17:%d" % (flat.shape[1] - 5)]
    if rows == "rows":
        idx = RNG.integers(0, flat.shape[1], 3001)
        return flat[:, idx], ["--rows", write_npy(tmp_path / "idx.npy", idx)]
    return want, []


@pytest.mark.parametrize("case", STREAMED)
def test_streamed_exact(exe, tmp_path, case):
    """Integer taps: every backend and thread count equals the reference
    exactly (sums of integers below 2^24)."""
    kind, wopts, rows, dtype = case
    img, path, opts, window, kw = streamed_case(tmp_path, kind, wopts, rows)
    ch = img.ndim == 3
    f = int_filters(6, window + ((3,) if ch else ()))
    fpath = write_npy(tmp_path / "f.npy", f)
    want, ropts = select(correlate(img, f, window, channels=ch, **kw), rows, tmp_path)
    base = ["--filters", fpath, "--dtype", dtype, *opts, *ropts]
    for extra in (["--threads", "1"], ["--threads", "2", "--budget", "64K", "--chunk", "16K"], ["--threads", "3"],
                  [], ["--backend", "uffd", "--budget", "8M", "--chunk", "64K"],
                  ["--backend", "eager"]):
        got = apply(exe, tmp_path, path, *base, *extra)
        assert got.dtype == np.dtype("float32" if dtype == "f32" else "float64")
        assert np.array_equal(got, want), extra


@pytest.mark.parametrize("case", STREAMED)
def test_streamed_random(exe, tmp_path, case):
    """Random taps: the same bytes whatever the thread count (the blocks do
    not depend on it); against the reference and the mapping within float
    rounding (OpenBLAS's sums of one element depend on the GEMM's shape: the
    mapping's output itself changes with its block size)."""
    kind, wopts, rows, dtype = case
    img, path, opts, window, kw = streamed_case(tmp_path, kind, wopts, rows)
    ch = img.ndim == 3
    saved = tmp_path / "saved.npy"
    base = ["--random", "5", "--seed", "7", "--dtype", dtype, *opts]
    run(exe, "apply", path, *base, "--out", tmp_path / "x.npy", "--save-filters", saved,
        "--quiet")
    f = np.load(saved)
    wshape = window + ((3,) if ch else ())
    if "--order" in opts:  # flat filters in (c, y, x) order
        f = np.moveaxis(f.reshape((5, 3) + window), 1, -1)
    want, ropts = select(correlate(img, f.reshape((5,) + wshape), window, channels=ch, **kw),
                         rows, tmp_path)
    outs = [tmp_path / ("t%d.npy" % t) for t in (1, 2, 3)]
    for t, out in zip((1, 2, 3), outs):
        run(exe, "apply", path, *base, *ropts, "--threads", str(t), "--out", out, "--quiet")
    one = outs[0].read_bytes()
    assert all(o.read_bytes() == one for o in outs[1:])
    got = np.load(outs[0])
    rtol = 1e-5 if dtype == "f32" else 1e-13
    close(got, want, img, f, rtol=rtol)
    mapped = apply(exe, tmp_path, path, *base, *ropts, "--backend", "uffd")
    close(got, mapped, img, f, rtol=rtol)


def kernel_env(name):
    env = dict(os.environ)
    env["PATCHMAP_APPLY_KERNEL"] = name
    return env


@pytest.mark.parametrize("shape,window,nf", [((77, 131), (7, 9), 21), ((45, 52), (32, 32), 7)])
def test_kernels(exe, tmp_path, shape, window, nf):
    """float32 without a mapping, on each kernel this CPU has (blas on any):
    integer taps exactly, random taps within rounding of the reference, and
    avx2 and avx512 the same bytes (one chain of fused multiply-adds per
    response). 21 filters of 7 x 9: a full panel of 16 and a partial one;
    blocks of rows that end in a partial block. 7 filters of 32 x 32: rows
    of 4 KiB, which the kernels read 4160 bytes apart."""
    img = RNG.integers(0, 256, shape).astype(np.uint8)
    path = write_npy(tmp_path / "img.npy", img)
    fi = int_filters(nf, window)
    fr = RNG.uniform(-1, 1, (nf,) + window).astype(np.float32)
    pi, pr = write_npy(tmp_path / "fi.npy", fi), write_npy(tmp_path / "fr.npy", fr)
    want_i, want_r = correlate(img, fi, window), correlate(img, fr, window)
    wopt = "%dx%d" % window
    got = {}
    for k in ("blas", "avx2", "avx512"):
        out = tmp_path / (k + ".npy")
        small = ["--threads", "2", "--budget", "256K", "--chunk", "16K"]
        p = run(exe, "apply", path, "--window", wopt, "--filters", pi, "--out", out, *small,
                "--json", env=kernel_env(k), check=False)
        if p.returncode:
            assert k != "blas" and p.stderr == "patchmap: PATCHMAP_APPLY_KERNEL=%s: this CPU " \
                "cannot run it; give blas, or leave it unset for the fastest this CPU has\n" % k
            assert not out.exists()
            continue
        rep = json.loads(p.stdout)
        assert rep["kernel"] == k
        assert rep["matrix"]["ld"] == (1040 if window == (32, 32) and k != "blas" else
                                       window[0] * window[1])
        assert np.array_equal(np.load(out), want_i), k
        run(exe, "apply", path, "--window", wopt, "--filters", pr, "--out", out, "--quiet",
            *small, env=kernel_env(k))
        got[k] = out.read_bytes()
        close(np.load(out), want_r, img, fr)
    assert "blas" in got
    if "avx2" in got and "avx512" in got:
        assert got["avx2"] == got["avx512"]
    if len(got) > 1:  # the default is one of the vector kernels
        run(exe, "apply", path, "--window", wopt, "--filters", pr, "--out", tmp_path / "d.npy",
            "--quiet", env={k: v for k, v in os.environ.items() if k != "PATCHMAP_APPLY_KERNEL"})
        assert (tmp_path / "d.npy").read_bytes() == got["avx512" if "avx512" in got else "avx2"]


def test_kernels_nan(exe, tmp_path):
    """A NaN response is the quiet NaN 0x7fc00000 on both vector kernels,
    in blocks of rows and one row at a time (a small budget), whichever
    NaN the image and the filters hold."""
    img = RNG.integers(0, 9, (40, 37)).astype(np.float32)
    img[3, 5] = np.nan
    img.view(np.uint32)[20, 30] = 0xffc00000  # -NaN
    f = int_filters(3, (4, 4))
    f.view(np.uint32)[1, 0, 0] = 0xffc12345
    path, fpath = write_npy(tmp_path / "img.npy", img), write_npy(tmp_path / "f.npy", f)
    outs = []
    for k in ("avx2", "avx512"):
        for budget in ([], ["--budget", "16K", "--chunk", "4K"]):
            out = tmp_path / ("%s%d.npy" % (k, len(outs)))
            p = run(exe, "apply", path, "--window", "4x4", "--filters", fpath, "--out", out,
                    "--quiet", *budget, env=kernel_env(k), check=False)
            if p.returncode:
                assert "this CPU cannot run it" in p.stderr
                continue
            outs.append(out.read_bytes())
            got = np.load(out)
            nan = np.isnan(got)
            assert nan[1].all() and nan.sum() > got.shape[1] * got.shape[2]
            assert (got.view(np.uint32)[nan] == 0x7fc00000).all()
            want = correlate(np.nan_to_num(img), f, (4, 4))
            assert np.array_equal(got[~nan], want[~nan])
    assert all(o == outs[0] for o in outs[1:])


def test_streamed_report(exe, tmp_path):
    img = RNG.integers(0, 256, (90, 70)).astype(np.uint8)
    path = write_npy(tmp_path / "img.npy", img)
    args = ["apply", path, "--window", "8x8", "--random", "3", "--out", tmp_path / "o.npy"]
    rep = json.loads(run(exe, *args, "--threads", "2", "--budget", "64K", "--chunk", "16K",
                         "--json").stdout)
    assert rep["lazy"]["backend"] == "none" and rep["lazy"]["mechanism"] == "pm_matrix_read"
    assert rep["threads"] == 2 and rep["block_rows"] < 83 * 63
    assert rep["kernel"] in ("avx512", "avx2", "blas")
    assert rep["blas_threads"] == (1 if rep["kernel"] == "blas" else 0)
    text = run(exe, *args, "--threads", "1").stdout
    assert "backend     none: computed with pm_matrix_read, no mapping\n" in text
    if rep["kernel"] == "blas":
        assert "through cblas_sgemm (1 thread, one BLAS thread each)" in text
    else:
        assert "through the %s filter-bank kernel (1 thread)\n" % rep["kernel"] in text
    text = run(exe, *args, "--threads", "1", env=kernel_env("blas")).stdout
    assert "through cblas_sgemm (1 thread, one BLAS thread each)" in text
    rep = json.loads(run(exe, *args, "--backend", "uffd", "--json").stdout)
    assert rep["lazy"]["backend"] == "uffd" and "threads" not in rep
    rep = json.loads(run(exe, *args, "--backend", "auto", "--json").stdout)
    assert rep["lazy"]["backend"] != "none" and "threads" not in rep
    # BLAS threads are a mapping's: asking for them maps the matrix
    rep = json.loads(run(exe, *args, "--blas-threads", "1", "--json").stdout)
    assert rep["lazy"]["backend"] != "none" and "threads" not in rep
