"""Row selections, extract_patches_2d and fold against scikit-learn (bit for
bit), numpy fancy indexing, and torch's fold where torch is importable."""

import numpy as np
import pytest

import patchmap
from conftest import BACKENDS
from numpy.lib.stride_tricks import sliding_window_view

sk_image = pytest.importorskip("sklearn.feature_extraction.image")


def matrix(img, k):
    if img.ndim == 2:
        return sliding_window_view(img, k).reshape(-1, k[0] * k[1])
    v = sliding_window_view(img, k, axis=(0, 1))  # (nh, nw, C, kh, kw)
    return v.transpose(0, 1, 3, 4, 2).reshape(-1, k[0] * k[1] * img.shape[2])


@pytest.mark.parametrize("shape", [(9, 11), (8, 7, 3), (5, 5)])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64, np.int32])
def test_select_index_mask_range(shape, dtype):
    rng = np.random.default_rng(1)
    img = (rng.random(shape) * 200).astype(dtype)
    k = (3, 2)
    M = matrix(img, k).astype(np.float32)
    n = M.shape[0]
    ch = 2 if img.ndim == 3 else None
    idx = rng.integers(0, n, 3 * n)
    X = patchmap.select(img, k, rows=idx, channel_axis=ch)
    assert np.array_equal(X, M[idx])
    mask = rng.random(n) < 0.4
    mask[0] = True
    X = patchmap.select(img, k, mask=mask, channel_axis=ch)
    assert np.array_equal(X, M[mask])
    X = patchmap.select(img, k, row_range=(1, n - 1), channel_axis=ch, budget="8K",
                        chunk="4K")
    assert np.array_equal(X, M[1:n - 1])


def test_select_errors():
    img = np.zeros((5, 5), np.float32)
    with pytest.raises(patchmap.InvalidArgument, match="number of windows"):
        patchmap.select(img, (2, 2), rows=[16])
    with pytest.raises(patchmap.InvalidArgument, match="one entry per window"):
        patchmap.select(img, (2, 2), mask=np.ones(15, bool))
    with pytest.raises(patchmap.InvalidArgument, match="selects no window"):
        patchmap.select(img, (2, 2), rows=[])
    with pytest.raises(patchmap.InvalidArgument, match="begin <= end"):
        patchmap.select(img, (2, 2), row_range=(3, 17))
    with pytest.raises(IndexError):
        patchmap.select(img, (2, 2), rows=[-1])
    with pytest.raises(TypeError):
        patchmap.select(img, (2, 2), rows=[1], mask=np.ones(16, bool))


@pytest.mark.parametrize("shape", [(20, 17), (16, 13, 3), (6, 6)])
@pytest.mark.parametrize("max_patches", [None, 1, 7, 10 ** 6, 0.25, 0.999])
@pytest.mark.parametrize("seed", [0, 42, np.random.RandomState(3)])
def test_extract_patches_2d_matches_sklearn(shape, max_patches, seed):
    rng = np.random.default_rng(5)
    img = (rng.random(shape) * 255).astype(np.uint8)
    ps = (4, 3)
    state = seed if not isinstance(seed, np.random.RandomState) else \
        np.random.RandomState(3)
    want = sk_image.extract_patches_2d(img, ps, max_patches=max_patches, random_state=state)
    state = seed if not isinstance(seed, np.random.RandomState) else \
        np.random.RandomState(3)
    X, shp = patchmap.extract_patches_2d(img, ps, max_patches=max_patches,
                                          random_state=state, return_shape=True)
    assert X.ndim == 2 and X.dtype == img.dtype
    got = X.reshape(shp)
    assert got.shape == want.shape
    assert got.dtype == want.dtype
    assert np.array_equal(got, want)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_sample_over_chunks_matches_sklearn(backend, dtype):
    """A sample of many rows over small chunks under the tightest budget
    (rows gathered in batches whose next lines are requested ahead, chunk
    edges inside rows), and read through pm_matrix_read by open().read()
    with backend none: the same bytes as scikit-learn's."""
    img = (np.random.default_rng(7).random((300, 257, 3)) * 255).astype(dtype)
    want = sk_image.extract_patches_2d(img, (5, 4), max_patches=0.05, random_state=11)
    want = want.reshape(len(want), -1)
    X = patchmap.extract_patches_2d(img, (5, 4), max_patches=0.05, random_state=11,
                                    backend=backend, chunk="4K", budget="12K")
    assert np.array_equal(X, want)
    with patchmap.open(img, (5, 4), channel_axis=2, dtype="same", sample=0.05,
                       random_state=11, backend="none") as m:
        assert np.array_equal(m.read(), want)
        assert np.array_equal(m.read(3, 1000), want[3:1000])
        assert np.array_equal(m.take([5, 0, 5]), want[[5, 0, 5]])
    with patchmap.PatchMatrix(img, (5, 4), channel_axis=2, dtype="same",
                              rows=np.arange(0, 200, 7)[::-1]) as m:
        assert np.array_equal(m.array, matrix(img, (5, 4))[np.arange(0, 200, 7)[::-1]])


def test_sample_blocks_into_partial_fit_match_sklearn_fit():
    """The lazy sample streamed by blocks() into IncrementalPCA.partial_fit
    gives the components scikit-learn's fit of its own sample gives, bit
    for bit (the same batches: fit's gen_batches of batch_size rows)."""
    from sklearn.decomposition import IncrementalPCA
    img = np.random.default_rng(9).random((200, 180)).astype(np.float32)
    want = sk_image.extract_patches_2d(img, (6, 5), max_patches=0.2, random_state=4)
    ref = IncrementalPCA(5, batch_size=500).fit(want.reshape(len(want), -1))
    X = patchmap.extract_patches_2d(img, (6, 5), max_patches=0.2, random_state=4,
                                    budget="16K", chunk="4K")
    assert X.shape[0] % 500 >= 5  # fit's last batch is not merged into the one before
    got = IncrementalPCA(5, batch_size=500)
    for b in patchmap.blocks(X, block_rows=500):
        got.partial_fit(b)
    assert np.array_equal(got.components_, ref.components_)
    assert np.array_equal(got.explained_variance_, ref.explained_variance_)


def test_open_selection_errors():
    img = np.zeros((5, 5), np.float32)
    with pytest.raises(IndexError, match="past the last window"):
        patchmap.open(img, (2, 2), rows=[16], backend="none")
    with pytest.raises(ValueError, match="out_shape"):
        patchmap.PatchMatrix(img, (2, 2), mask=np.ones(15, bool))
    with pytest.raises(ValueError, match="give one of"):
        patchmap.open(img, (2, 2), rows=[1], sample=3)


@pytest.mark.parametrize("seed", [0, 7, "state"])
@pytest.mark.parametrize("k", [3, 8185, 2**31 + 5, 2**33])
def test_sample_draws_in_pieces(seed, k):
    """The sample's later axes are drawn in pieces: the same numbers as one
    randint per axis, and the generator left in the same state."""
    from patchmap import _subsets
    n = 3 * _subsets._PIECE + 17
    mk = (lambda: np.random.RandomState(5)) if seed == "state" else \
        (lambda: np.random.RandomState(seed))
    want_rng, got_rng = mk(), mk()
    out = (k, 5, 1 << 20) if k < 2**20 else (3, k)
    draws = [want_rng.randint(m, size=n) for m in out]
    want = np.ravel_multi_index(draws, out) if k < 2**20 else draws[0] * np.int64(k) + draws[1]
    got = _subsets._sample_windows(got_rng, out, n)
    assert got.dtype == np.uint64 and np.array_equal(got, want.astype(np.uint64))
    assert want_rng.randint(1 << 30) == got_rng.randint(1 << 30)


@pytest.mark.parametrize("shape", [(20, 17), (16, 13, 3)])
def test_extract_patches_2d_fraction_of_no_window(shape):
    """A fraction that rounds to no window: scikit-learn's empty array, of
    the image's dtype and its patch shape, and the generator untouched."""
    img = np.zeros(shape, np.uint16)
    want = sk_image.extract_patches_2d(img, (4, 3), max_patches=0.001, random_state=0)
    X, shp = patchmap.extract_patches_2d(img, (4, 3), max_patches=0.001, random_state=0,
                                          return_shape=True)
    got = X.reshape(shp)
    assert got.shape == want.shape and got.dtype == want.dtype and want.size == 0
    rs = np.random.RandomState(1)
    patchmap.extract_patches_2d(img, (4, 3), max_patches=0.001, random_state=rs)
    assert rs.randint(1 << 30) == np.random.RandomState(1).randint(1 << 30)


def test_describe_leaves_the_generator_alone():
    """describe() draws the sample on a copy: a RandomState passed to it
    (or numpy's global one) is where it was, and windows() with it then
    gives the sample describe() reported."""
    img = np.zeros((30, 40), np.float32)
    rs = np.random.RandomState(8)
    d = patchmap.describe(img, (3, 3), sample=50, random_state=rs)
    assert rs.randint(1 << 30) == np.random.RandomState(8).randint(1 << 30)
    rs = np.random.RandomState(8)
    d2 = patchmap.describe(img, (3, 3), sample=50, random_state=rs)
    assert d2["rows"] == d["rows"]
    X = patchmap.windows(img, (3, 3), sample=50, random_state=rs)
    rs = np.random.RandomState(8)
    draws = [rs.randint(k, size=50) for k in (28, 38)]
    assert np.array_equal(X, patchmap.windows(img, (3, 3), rows=np.ravel_multi_index(draws, (28, 38))))
    np.random.seed(3)
    patchmap.describe(img, (3, 3), sample=10)
    assert np.random.randint(1 << 30) == np.random.RandomState(3).randint(1 << 30)


def test_extract_patches_2d_errors():
    img = np.zeros((5, 5))
    for bad in (1.0, -1, 1.5):
        with pytest.raises(ValueError):
            patchmap.extract_patches_2d(img, (2, 2), max_patches=bad, random_state=0)
    with pytest.raises(ValueError, match="Height"):
        patchmap.extract_patches_2d(img, (6, 2))


@pytest.mark.parametrize("shape,ps", [((12, 9), (4, 3)), ((10, 11, 3), (3, 5)),
                                      ((7, 7), (4, 4)), ((9, 5, 2), (5, 3))])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8])
def test_reconstruct_matches_sklearn(shape, ps, dtype):
    """Where every side is at least 2 * patch - 1, scikit-learn divides by
    the overlap count: there the results are equal bit for bit."""
    rng = np.random.default_rng(7)
    img = (rng.random(shape) * 100).astype(dtype)
    patches = sk_image.extract_patches_2d(img, ps)
    # Patches that differ from the image's, so the mean is not trivial.
    patches = (patches * rng.random(patches.shape) * 3).astype(dtype)
    want = sk_image.reconstruct_from_patches_2d(patches, shape)
    got = patchmap.reconstruct_from_patches_2d(patches, shape)
    assert got.dtype == want.dtype == np.float64
    assert np.array_equal(got, want)


def test_reconstruct_small_image_is_the_mean():
    """5x7 with 4x4 patches: scikit-learn's divisor is not the overlap count
    (its round trip fails); ours is the exact mean, which round-trips."""
    rng = np.random.default_rng(8)
    img = rng.integers(0, 256, (5, 7)) / 8.0  # sums of these are exact
    patches = sk_image.extract_patches_2d(img, (4, 4))
    assert not np.allclose(sk_image.reconstruct_from_patches_2d(patches, img.shape), img)
    assert np.array_equal(patchmap.reconstruct_from_patches_2d(patches, img.shape), img)


def plain_fold(X, shape, k, step, pad, mode):
    """Sum/mean/count by loops, padding cropped, in matrix order."""
    h, w = shape
    out = np.zeros(shape)
    cnt = np.zeros(shape)
    nh = (h + 2 * pad - k[0]) // step + 1
    nw = (w + 2 * pad - k[1]) // step + 1
    r = 0
    for i in range(nh):
        for j in range(nw):
            for a in range(k[0]):
                for b in range(k[1]):
                    y, x = i * step + a - pad, j * step + b - pad
                    if 0 <= y < h and 0 <= x < w:
                        out[y, x] += X[r, a * k[1] + b]
                        cnt[y, x] += 1
            r += 1
    if mode == "count":
        return cnt
    if mode == "mean":
        return np.where(cnt > 0, out / np.where(cnt > 0, cnt, 1), 0)
    return out


@pytest.mark.parametrize("mode", ["sum", "mean", "count"])
@pytest.mark.parametrize("step,pad", [(1, 0), (2, 1), (3, 2)])
def test_fold_plain(mode, step, pad):
    rng = np.random.default_rng(9)
    shape, k = (9, 8), (3, 4)
    nh = (shape[0] + 2 * pad - k[0]) // step + 1
    nw = (shape[1] + 2 * pad - k[1]) // step + 1
    X = rng.integers(-50, 50, (nh * nw, 12)).astype(np.int32)
    got = patchmap.fold(X, shape, k, step=step, padding=pad, mode=mode, pad_mode="reflect")
    assert np.array_equal(got, plain_fold(X, shape, k, step, pad, mode))


def test_fold_torch():
    torch = pytest.importorskip("torch", reason="torch is not installed: fold is compared "
                                "with scikit-learn and the plain fold only")
    F = torch.nn.functional
    rng = np.random.default_rng(10)
    for (h, w), k, step, pad, dil in [((9, 8), (3, 2), 1, 0, 1), ((12, 10), (3, 3), 2, 1, 2)]:
        C = 3
        img = rng.integers(0, 9, (1, C, h, w)).astype(np.float32)
        cols = F.unfold(torch.from_numpy(img), k, dilation=dil, padding=pad, stride=step)
        want = F.fold(cols, (h, w), k, dilation=dil, padding=pad, stride=step)[0].numpy()
        X = cols[0].numpy().T  # windows x (c, y, x)
        got = patchmap.fold(X, (C, h, w), k, step=step, dilation=dil, padding=pad,
                            channel_axis=0, order="channel", dtype=np.float32)
        assert np.array_equal(got, want)  # small integers: exact in any order


@pytest.mark.parametrize("in_dtype", [np.float32, np.float64, np.int32, np.uint8])
@pytest.mark.parametrize("geom", [
    dict(k=(5, 4), step=None, dilation=None, padding=None),
    dict(k=(3, 3), step=(4, 5), dilation=None, padding=None),      # step beyond the window
    dict(k=(3, 2), step=(2, 1), dilation=(3, 2), padding=((2, 2), (1, 1))),
])
def test_fold_threads_change_nothing(in_dtype, geom):
    """The image split into bands of rows (threads 1, 2, 3, more threads
    than rows) folds to the same bytes as the plain loop (integers: exact
    in any order) and, for floats, as one thread, bit for bit."""
    rng = np.random.default_rng(11)
    shape, C = (37, 41, 3), 3
    k = geom["k"]
    kw = {n: geom[n] for n in ("step", "dilation", "padding")}
    info = patchmap.describe(np.zeros(shape, np.uint8), k, channel_axis=2, **kw)
    n, E = info["matrix"]["rows"], info["matrix"]["cols"]
    if in_dtype in (np.float32, np.float64):
        X = rng.standard_normal((n, E)).astype(in_dtype)
    else:
        X = rng.integers(0, 200, (n, E)).astype(in_dtype)
    outs = [patchmap.fold(X, shape, k, channel_axis=2, mode=mode, dtype=dt, threads=t, **kw)
            for t in (1, 2, 3, 60) for mode in ("sum", "mean") for dt in (np.float32, np.float64)]
    for i, o in enumerate(outs[4:]):
        assert o.tobytes() == outs[i % 4].tobytes()
    if geom["dilation"] is None and geom["padding"] is None and in_dtype not in (np.float32,
                                                                                 np.float64):
        s = geom["step"] or (1, 1)
        want = np.zeros(shape)
        nh = (shape[0] - k[0]) // s[0] + 1
        nw = (shape[1] - k[1]) // s[1] + 1
        for r in range(n):
            y, x = divmod(r, nw)
            want[y * s[0]:y * s[0] + k[0], x * s[1]:x * s[1] + k[1]] += X[r].reshape(k[0], k[1], C)
        assert nh * nw == n
        assert np.array_equal(outs[1], want)


@pytest.mark.parametrize("dtype", [">f8", ">f4", ">i4", ">u2"])
def test_fold_big_endian_input(dtype):
    """A big-endian input (a .npy written elsewhere) folds as its values
    do in the machine's order; it was refused with TypeError, where the
    tool takes it."""
    X = np.random.default_rng(5).integers(0, 1000, (63, 9)).astype(dtype)
    for mode in ("sum", "mean", "count"):
        got = patchmap.fold(X, (9, 11), 3, mode=mode)
        want = patchmap.fold(X.astype(np.dtype(dtype).newbyteorder("=")), (9, 11), 3, mode=mode)
        assert got.tobytes() == want.tobytes()


def test_fold_lazy_input_tightest_budget():
    """A lazy matrix under a two-chunk budget folds, on two threads, to the
    bytes of its materialized copy on one."""
    rng = np.random.default_rng(12)
    img = rng.standard_normal((61, 47)).astype(np.float32)
    X = patchmap.windows(img, (7, 6), step=(1, 2), budget="8K", chunk="4K")
    want = patchmap.fold(np.array(X), img.shape, (7, 6), step=(1, 2), mode="mean", threads=1)
    got = patchmap.fold(X, img.shape, (7, 6), step=(1, 2), mode="mean", threads=2)
    assert got.tobytes() == want.tobytes()
    assert X.nbytes > 8192


def blocks_of(X, sizes):
    """X's rows as consecutive blocks of the given sizes (the last takes the
    rest), as a generator: fold must not need len() or a second pass."""
    a = 0
    for n in sizes:
        yield X[a:a + n]
        a += n
    yield X[a:]


FOLD_GEOMETRIES = [  # image shape, window, geometry
    ((13, 11), (3, 4), {}),
    ((13, 11), (3, 3), dict(step=2, padding=1)),
    ((14, 12), (3, 2), dict(step=(3, 2), dilation=2, padding=((2, 1), (0, 3)))),
    ((9, 10, 3), (2, 3), dict(channel_axis=2)),
    ((2, 12, 9), (4, 2), dict(channel_axis=0, order="channel", step=2, padding=2)),
    ((17,), (4,), dict(step=3, padding=2)),
]


@pytest.mark.parametrize("mode", ["sum", "mean", "count"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("geometry", FOLD_GEOMETRIES, ids=str)
def test_fold_blocks_equal_whole(geometry, dtype, mode):
    """An iterator of row blocks folds to the whole matrix's fold, bit for
    bit for values whose sums are exact, whatever the block boundaries
    (inside a row of windows, empty blocks, one row, all rows at once)."""
    shape, k, kw = geometry
    rng = np.random.default_rng(11)
    d = patchmap.describe(np.zeros(shape, np.uint8), k, **kw)["matrix"]
    n = d["rows"]
    for cols in (d["cols"], 1):
        X = rng.integers(-100, 100, (n, cols)).astype(np.float32)
        want = patchmap.fold(X, shape, k, mode=mode, dtype=dtype, **kw)
        for sizes in ([], [1], [0, 5, 0, 3], [7] * (n // 7), [n - 1], [n, 0]):
            got = patchmap.fold(blocks_of(X, sizes), shape, k, mode=mode, dtype=dtype, **kw)
            assert got.dtype == want.dtype and got.shape == want.shape
            assert np.array_equal(got, want), (sizes, cols)
        got = patchmap.fold(blocks_of(X, [n // 2]), shape, k, mode=mode, dtype=dtype,
                            threads=3, **kw)
        assert np.array_equal(got, want)
        # a row range of the windows, in blocks
        a, b = n // 3, n - 2
        want = patchmap.fold(X[a:b], shape, k, mode=mode, dtype=dtype, row_range=(a, b), **kw)
        got = patchmap.fold(blocks_of(X[a:b], [4, 1]), shape, k, mode=mode, dtype=dtype,
                            row_range=(a, b), **kw)
        assert np.array_equal(got, want)


def test_fold_blocks_of_a_lazy_matrix_float():
    """Float sums in blocks differ from the whole fold by rounding only; the
    mean of every window of an image is the image (a lazy matrix's row
    blocks, transformed as a model would)."""
    rng = np.random.default_rng(12)
    img = rng.random((40, 37)).astype(np.float32)
    X = patchmap.windows(img, (5, 6), budget="1M", chunk="64K")
    want = patchmap.fold(X * 3, img.shape, (5, 6), mode="sum")
    blocks = (X[a:a + 500] * 3 for a in range(0, len(X), 500))
    got = patchmap.fold(blocks, img.shape, (5, 6), mode="sum")
    # each pixel is a sum of at most 30 values of [0, 3): error below 30 ulp of 90
    assert np.abs(got - want).max() <= 30 * np.spacing(90.0)
    mean = patchmap.fold((X[a:a + 333] for a in range(0, len(X), 333)), img.shape, (5, 6),
                         mode="mean", dtype=np.float32)
    assert np.allclose(mean, img, rtol=0, atol=4 * np.spacing(np.float32(1)))


def test_fold_blocks_errors():
    k, shape = (3, 3), (8, 9)
    n = 6 * 7
    X = np.ones((n, 9), np.float32)
    with pytest.raises(ValueError, match="more rows than the 42 windows"):
        patchmap.fold(blocks_of(np.ones((n + 1, 9)), [40]), shape, k)
    with pytest.raises(ValueError, match="hold 41 rows; the geometry has 42"):
        patchmap.fold(blocks_of(X[:41], [20]), shape, k)
    with pytest.raises(ValueError, match="row_range=, not rows= or mask="):
        patchmap.fold(blocks_of(X, [1]), shape, k, rows=[1, 2])
    with pytest.raises(ValueError, match="layout must be \"rows\""):
        patchmap.fold(iter([X.T]), shape, k, layout="cols")
    with pytest.raises(ValueError, match="block 1 of X must be 2-D"):
        patchmap.fold(iter([X[:2], np.ones((2, 2, 9))]), shape, k)
    with pytest.raises(patchmap.Error):  # 5 values per window: neither 9, 1 nor channels
        patchmap.fold(iter([np.ones((n, 5))]), shape, k)
    with pytest.raises(ValueError, match="mode must be"):
        patchmap.fold(blocks_of(X, []), shape, k, mode="max")


def test_fold_reads_a_whole_lazy_matrix_without_faults():
    """The whole lazy matrix is read by the fold's threads (pm_matrix_read),
    never through its mapping: no fault, the bytes of the materialized
    copy. A slice of it goes through the mapping, with the same result."""
    rng = np.random.default_rng(13)
    img = rng.standard_normal((53, 45, 2)).astype(np.float32)
    kw = dict(step=(2, 1), dilation=(1, 2), channel_axis=2)
    pm = patchmap.open_matrix(img, (5, 4), budget="8K", chunk="4K", **kw)
    X = pm.array
    want = patchmap.fold(np.array(X), img.shape, (5, 4), mode="mean", threads=1, **kw)
    assert pm.stats().faults > 0
    before = pm.stats().faults
    for t in (1, 2, 7):
        got = patchmap.fold(X, img.shape, (5, 4), mode="mean", threads=t, **kw)
        assert got.tobytes() == want.tobytes()
    assert pm.stats().faults == before
    part = patchmap.fold(X[3:40], img.shape, (5, 4), mode="sum", row_range=(3, 40), **kw)
    assert pm.stats().faults > before
    ref = patchmap.fold(np.array(X[3:40]), img.shape, (5, 4), mode="sum", row_range=(3, 40),
                        threads=1, **kw)
    assert part.tobytes() == ref.tobytes()
    del X
    pm.close()
