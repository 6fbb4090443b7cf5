"""patchmap.windows() against numpy's own patch matrix, bit for bit: shapes,
dtypes, steps, dilations, channels, strides, padding, column orders,
layouts, affine, row pitch, and every backend under small budgets."""

import itertools

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

import conftest
import patchmap
from conftest import BACKENDS, assert_bits_equal, random_image, reference

DTYPES = ["uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64"]


def test_seed_example():
    img = np.arange(9, dtype=np.int32).reshape(3, 3)
    X = patchmap.windows(img, (2, 2))
    assert X.tolist() == [[0, 1, 3, 4], [1, 2, 4, 5], [3, 4, 6, 7], [4, 5, 7, 8]]
    assert X.dtype == np.float32
    assert X.flags.c_contiguous and not X.flags.writeable and not X.flags.owndata
    # Nothing was copied: the buffer is the library's mapping, shared with
    # neither the image nor numpy's (copying) reshape of the view.
    assert X.ctypes.data == X.base.__array_interface__["data"][0]
    view = sliding_window_view(img, (2, 2))
    assert not np.may_share_memory(X, img)
    assert not np.may_share_memory(X, view)
    assert not np.may_share_memory(X, view.reshape(-1, 4))
    assert isinstance(X.base, patchmap._core._Mapping)


def test_the_spec_formula_2d():
    """sliding_window_view(img, w)[::sy, ::sx].reshape(-1, prod(w)).astype(dtype)"""
    img = random_image((37, 29), np.uint8)
    for w, (sy, sx) in itertools.product([(1, 1), (3, 5), (8, 8), (37, 1)],
                                         [(1, 1), (2, 3), (5, 1)]):
        R = sliding_window_view(img, w)[::sy, ::sx].reshape(-1, int(np.prod(w))).astype(np.float32)
        assert_bits_equal(patchmap.windows(img, w, step=(sy, sx)), R)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("out", [np.float32, np.float64, "same", None])
def test_dtypes(dtype, out):
    """dtype="same" is the source's, None (the default) float32."""
    img = random_image((23, 31), dtype, seed=1)
    ref_dtype = None if out == "same" else (np.float32 if out is None else out)
    for w, step, dil in [((3, 4), 1, 1), ((5, 2), (2, 3), (2, 1)), ((1, 7), 3, (1, 4))]:
        X = patchmap.windows(img, w, step=step, dilation=dil, dtype=out)
        assert_bits_equal(X, reference(img, w, step, dil, dtype=ref_dtype))


@pytest.mark.parametrize("shape,window", [
    ((50,), (7,)), ((1,), (1,)), ((13, 1), (4, 1)), ((9, 10, 11), (2, 3, 4)),
    ((4, 5, 6, 7), (2, 2, 3, 1)), ((2,) * 8, (2, 1, 2, 1, 2, 1, 2, 1)),
])
def test_dimensions(shape, window):
    img = random_image(shape, np.int16, seed=2)
    assert_bits_equal(patchmap.windows(img, window), reference(img, window))
    steps = tuple(range(1, len(shape) + 1))
    assert_bits_equal(patchmap.windows(img, window, step=steps), reference(img, window, steps))


@pytest.mark.parametrize("step", [1, 2, 3, (1, 4), (5, 2)])
@pytest.mark.parametrize("dilation", [1, 2, (3, 1), (1, 5)])
def test_steps_and_dilations(step, dilation):
    img = random_image((40, 45), np.float32, seed=3)
    X = patchmap.windows(img, (4, 3), step=step, dilation=dilation)
    assert_bits_equal(X, reference(img, (4, 3), step, dilation))
    # The dilated window by hand: the strided view [..., ::d] of a larger one.
    dy, dx = (dilation, dilation) if np.ndim(dilation) == 0 else dilation
    sy, sx = (step, step) if np.ndim(step) == 0 else step
    big = sliding_window_view(img, (3 * dy + 1, 2 * dx + 1))[::sy, ::sx, ::dy, ::dx]
    assert_bits_equal(X, big.reshape(-1, 12).astype(np.float32))


def test_window_shape_int_means_every_axis():
    img = random_image((10, 12), np.uint8)
    assert_bits_equal(patchmap.windows(img, 3), reference(img, (3, 3)))


@pytest.mark.parametrize("axis", [-1, 0, 1, 2])
@pytest.mark.parametrize("order", ["window", "channel"])
def test_channels(axis, order):
    img = random_image((11, 13, 3), np.uint8, seed=4)
    img = np.moveaxis(img, -1, axis)  # a view: channels wherever asked
    w, step, dil = (3, 2), (2, 1), (1, 2)
    X = patchmap.windows(img, w, step=step, dilation=dil, channel_axis=axis, order=order)
    assert_bits_equal(X, reference(img, w, step, dil, channel_axis=axis, order=order))


def test_channels_spec_formula():
    """Window order: sliding_window_view with the channel in the window."""
    img = random_image((16, 20, 4), np.uint16, seed=5)
    R = sliding_window_view(img, (5, 3, 4))[::2, ::3].reshape(-1, 5 * 3 * 4).astype(np.float32)
    assert_bits_equal(patchmap.windows(img, (5, 3), step=(2, 3), channel_axis=-1), R)


def test_channel_major_against_loops():
    """(c, y, x) columns as PyTorch's unfold and Caffe's im2col give them,
    built by plain loops (independent of the numpy reference)."""
    C, H, W, kh, kw, s, d = 3, 9, 10, 3, 2, 2, 2
    img = random_image((C, H, W), np.float32, seed=6)
    oh, ow = (H - (kh - 1) * d - 1) // s + 1, (W - (kw - 1) * d - 1) // s + 1
    R = np.empty((oh * ow, C * kh * kw), np.float32)
    for oy in range(oh):
        for ox in range(ow):
            col = 0
            for c in range(C):
                for ky in range(kh):
                    for kx in range(kw):
                        R[oy * ow + ox, col] = img[c, oy * s + ky * d, ox * s + kx * d]
                        col += 1
    X = patchmap.windows(img, (kh, kw), step=s, dilation=d, channel_axis=0, order="channel")
    assert_bits_equal(X, R)
    # The transposed layout is PyTorch's unfold output itself: (C*kh*kw, L).
    T = patchmap.windows(img, (kh, kw), step=s, dilation=d, channel_axis=0, order="channel",
                         layout="cols")
    assert_bits_equal(T, np.ascontiguousarray(R.T))


@pytest.mark.parametrize("kind", ["sliced", "transposed", "reversed", "broadcast", "fortran",
                                  "mixed", "memmap"])
def test_source_strides(kind, tmp_path):
    base = random_image((60, 70), np.float64, seed=7)
    if kind == "sliced":
        img = base[3:50:2, 1::3]
    elif kind == "transposed":
        img = base.T
    elif kind == "reversed":
        img = base[::-1, ::-2]
    elif kind == "broadcast":
        img = np.broadcast_to(base[5], (40, 70))  # a zero stride
        assert img.strides[0] == 0
    elif kind == "fortran":
        img = np.asfortranarray(base)
    elif kind == "mixed":
        img = np.moveaxis(random_image((5, 30, 3, 20), np.int32), 2, 0)[:, ::-1, 1, ::2]
    else:
        mm = np.memmap(tmp_path / "img.raw", dtype=np.float64, mode="w+", shape=base.shape)
        mm[:] = base
        mm.flush()
        img = np.memmap(tmp_path / "img.raw", dtype=np.float64, mode="r", shape=base.shape)[::-1]
    cases = [((4, 5), 1), ((3, 3), (2, 3))] if img.ndim == 2 else \
        [((2, 3, 4), 1), ((3, 2, 5), (2, 1, 3))]
    for w, step in cases:
        X = patchmap.windows(img, w, step=step)
        assert_bits_equal(X, reference(np.array(img), w, step))
    assert not np.shares_memory(X, img)


def test_negative_strides_with_channels():
    base = random_image((12, 14, 3), np.uint8, seed=8)
    img = base[::-1, ::-1, ::-1]
    X = patchmap.windows(img, (3, 3), channel_axis=2)
    assert_bits_equal(X, reference(img.copy(), (3, 3), channel_axis=2))


@pytest.mark.parametrize("mode", ["zero", "constant", "edge", "reflect", "symmetric", "wrap"])
@pytest.mark.parametrize("pads", [[(1, 1), (2, 0)], [(0, 3), (4, 4)], [(5, 6), (1, 9)]])
def test_padding(mode, pads):
    img = random_image((6, 8), np.int16, seed=9)
    value = -7 if mode == "constant" else None  # a pad value goes with "constant" only
    X = patchmap.windows(img, (3, 4), step=(1, 2), dilation=(2, 1), padding=pads,
                         pad_mode=mode, pad_value=value)
    assert_bits_equal(X, reference(img, (3, 4), (1, 2), (2, 1), pads, mode, value or 0))


def test_wrap_reference_is_numpy_within_one_period():
    x = random_image((6, 8), np.int16)
    for pads in [[(1, 1), (2, 0)], [(6, 0), (0, 8)], [(3, 5), (7, 1)]]:
        assert np.array_equal(conftest.pad(x, pads, "wrap"), np.pad(x, pads, mode="wrap"))


@pytest.mark.parametrize("mode", ["zero", "edge", "reflect", "symmetric", "wrap"])
def test_padding_with_channels_and_3d(mode):
    img = random_image((5, 6, 2), np.float32, seed=10)
    pads = [(2, 1), (1, 3)]
    X = patchmap.windows(img, (3, 3), padding=pads, pad_mode=mode, channel_axis=-1)
    assert_bits_equal(X, reference(img, (3, 3), pads=pads, pad_mode=mode, channel_axis=-1))
    vol = random_image((4, 5, 6), np.uint8, seed=11)
    pads = [(1, 1), (0, 2), (3, 0)]
    X = patchmap.windows(vol, (2, 3, 2), padding=pads, pad_mode=mode)
    assert_bits_equal(X, reference(vol, (2, 3, 2), pads=pads, pad_mode=mode))


def test_padding_forms():
    img = random_image((7, 9), np.uint8, seed=12)
    for padding, pads in [(2, [(2, 2)] * 2), (((1, 3),), [(1, 3)] * 2), ((2, 2), [(2, 2)] * 2),
                          (((0, 1), (2, 0)), [(0, 1), (2, 0)]), ("valid", None)]:
        assert_bits_equal(patchmap.windows(img, 3, padding=padding),
                          reference(img, (3, 3), pads=pads))
    # "same": ceil(n / step) positions per axis, the odd pad sample after.
    for step, dil in [(1, 1), (2, 1), (3, 2), (1, 2)]:
        X = patchmap.windows(img, (4, 3), step=step, dilation=dil, padding="same",
                             pad_mode="edge")
        assert X.shape[0] == -(-7 // step) * -(-9 // step)
        pads = []
        for n, k in [(7, 4), (9, 3)]:
            total = max((-(-n // step) - 1) * step + (k - 1) * dil + 1 - n, 0)
            pads.append((total // 2, total - total // 2))
        assert_bits_equal(X, reference(img, (4, 3), step, dil, pads, "edge"))


def test_constant_pad_value_in_float():
    img = random_image((5, 5), np.float64, seed=13)
    X = patchmap.windows(img, 3, padding=1, pad_mode="constant", pad_value=0.25, dtype=np.float64)
    assert_bits_equal(X, reference(img, 3, pads=[(1, 1)] * 2, pad_mode="constant",
                                   pad_value=0.25, dtype=np.float64))


@pytest.mark.parametrize("dtype", ["uint8", "int16", "float64"])
@pytest.mark.parametrize("out", [np.float32, np.float64])
def test_affine(dtype, out):
    img = random_image((12, 15), dtype, seed=14)
    X = patchmap.windows(img, (3, 4), dtype=out, affine=(1 / 255, -0.5))
    assert_bits_equal(X, reference(img, (3, 4), dtype=out, affine=(1 / 255, -0.5)))


def test_row_pitch():
    img = random_image((10, 11), np.float32, seed=15)
    X = patchmap.windows(img, (3, 3), row_pitch=64)  # 9 floats used of 16
    R = reference(img, (3, 3))
    assert X.strides == (64, 4) and not X.flags.c_contiguous
    assert_bits_equal(X, R)


@pytest.mark.parametrize("backend", BACKENDS)
def test_backends_small_budget(backend):
    """Under a budget of a few pages, with reads in a scrambled order, every
    backend still gives numpy's matrix, and the lazy ones evict."""
    img = random_image((180, 190), np.uint8, seed=16)
    kw = dict(step=(1, 2), dilation=(1, 2), padding=[(2, 2), (0, 3)], pad_mode="reflect")
    X = patchmap.windows(img, (7, 5), backend=backend, chunk="4k", budget="16k", **kw)
    R = reference(img, (7, 5), kw["step"], kw["dilation"], kw["padding"], "reflect")
    assert X.nbytes > 50 * 16384
    perm = np.random.default_rng(0).permutation(X.shape[0])
    assert_bits_equal(X[perm], R[perm])   # random row order
    assert_bits_equal(X[::-1], R[::-1])   # backwards
    assert_bits_equal(X, R)               # forwards
    st = patchmap.stats(X)
    if backend != "auto":
        assert st.backend == backend
    if st.backend != "eager":
        assert st.budget_bytes == 16384 and st.chunk_bytes == 4096
        assert st.evictions > 0 and st.faults > 0
        assert st.peak_resident_bytes <= st.budget_bytes


@pytest.mark.parametrize("backend", BACKENDS)
def test_backends_channels_and_orders(backend):
    img = random_image((3, 64, 70), np.float32, seed=17)
    for order in ["window", "channel"]:
        X = patchmap.windows(img, (5, 5), step=2, channel_axis=0, order=order, backend=backend,
                             chunk="8k", budget="32k", dtype=np.float64)
        assert_bits_equal(X, reference(img, (5, 5), 2, channel_axis=0, order=order,
                                       dtype=np.float64))


@pytest.mark.parametrize("backend", BACKENDS)
def test_threads_read_concurrently(backend):
    """numpy releases the GIL in its loops: four threads sum disjoint and
    overlapping row blocks of one matrix at once."""
    from concurrent.futures import ThreadPoolExecutor
    img = random_image((256, 256), np.uint8, seed=18)
    X = patchmap.windows(img, (8, 8), backend=backend, chunk="64k", budget="256k")
    R = reference(img, (8, 8))
    blocks = [(a, min(a + 7000, X.shape[0])) for a in range(0, X.shape[0], 5000)]
    with ThreadPoolExecutor(4) as ex:
        got = list(ex.map(lambda ab: X[ab[0]:ab[1]].sum(axis=0, dtype=np.float64), blocks * 3))
    for (a, b), g in zip(blocks * 3, got):
        assert np.array_equal(g, R[a:b].sum(axis=0, dtype=np.float64))


def test_read_and_backend_none():
    img = random_image((30, 40), np.int32, seed=19)
    R = reference(img, (4, 4), 2, dtype=np.float64)
    with patchmap.open(img, (4, 4), step=2, dtype=np.float64, backend="none") as m:
        assert_bits_equal(m.read(), R)
        assert_bits_equal(m.read(5, 17), R[5:17])
        assert m.read(17, 5).shape == (0, 16)
        assert m.stats().backend == "none"
        with pytest.raises(ValueError, match="no mapping"):
            m.array
    with patchmap.open(img, (4, 4), step=2, dtype=np.float64, row_pitch=256) as m:
        assert_bits_equal(m.read(-3), R[-3:])
    with pytest.raises(ValueError, match="none"):
        patchmap.windows(img, 3, backend="none")


@pytest.mark.parametrize("backend", ["uffd", "sigsegv", "eager"])
@pytest.mark.parametrize("threads", [1, 2, 5])
def test_blocks(backend, threads):
    """blocks() yields X's rows in order, as new arrays of its own, computed
    without faulting the mapping in; views of whole rows, a PatchMatrix
    with backend none, and ordinary arrays (their slices) too."""
    img = random_image((90, 70), np.uint16, seed=21)
    X = patchmap.windows(img, (5, 4), step=(1, 2), dtype=np.float64, backend=backend,
                         chunk="4k", budget="16k")
    R = reference(img, (5, 4), (1, 2), dtype=np.float64)
    faults = patchmap.stats(X).faults
    for view, ref in [(X, R), (X[3:], R[3:]), (X[::-3], R[::-3]), (X[10:400:7], R[10:400:7])]:
        for rows in (1, 13, 64, len(ref), len(ref) + 5):
            got = list(patchmap.blocks(view, block_rows=rows, threads=threads))
            assert [len(b) for b in got] == [len(ref[a:a + rows])
                                             for a in range(0, len(ref), rows)]
            assert all(b.flags.writeable and not np.shares_memory(b, X) for b in got)
            assert_bits_equal(np.concatenate(got), ref)
    assert patchmap.stats(X).faults == faults  # nothing faulted in
    sizes = [len(b) for b in patchmap.blocks(X, block_bytes="1K", threads=threads)]
    assert set(sizes[:-1]) == {1024 // (20 * 8)} and sum(sizes) == len(R)
    # early exit: the iteration stops, the blocks being computed are dropped
    it = patchmap.blocks(X, block_rows=3, threads=threads)
    first = next(it)
    it.close()
    assert_bits_equal(first, R[:3])
    with patchmap.open(img, (5, 4), step=(1, 2), dtype=np.float64, backend="none",
                       row_pitch=256) as m:
        assert_bits_equal(np.concatenate(list(patchmap.blocks(m, block_rows=50))), R)
    plain = np.arange(30.0).reshape(10, 3)
    got = list(patchmap.blocks(plain, block_rows=4, threads=threads))
    assert [np.shares_memory(b, plain) for b in got] == [True] * 3  # views of plain
    assert_bits_equal(np.concatenate(got), plain)


@pytest.mark.parametrize("backend", ["eager", "none"])
def test_blocks_of_padded_rows_are_contiguous(backend):
    """With row_pitch the stored rows carry padding; the blocks are still
    C-contiguous arrays of the used columns, as documented."""
    img = random_image((30, 25), np.float32, seed=5)
    R = reference(img, (3, 4))
    with patchmap.open(img, (3, 4), row_pitch=64, backend=backend) as m:
        views = [(m, R)] if backend == "none" else [(m, R), (m.array[::-2], R[::-2])]
        for X, ref in views:
            for rows in (1, 7, len(R)):
                got = list(patchmap.blocks(X, block_rows=rows))
                assert all(b.flags.c_contiguous and b.flags.writeable for b in got)
                assert_bits_equal(np.concatenate(got), ref)
        del views, X


def test_blocks_errors():
    img = random_image((20, 20), np.uint8)
    X = patchmap.windows(img, (3, 3))
    with pytest.raises(ValueError, match="whole rows"):
        patchmap.blocks(X[:, 1:])
    with pytest.raises(ValueError, match="2-D"):
        patchmap.blocks(np.zeros(5))
    with pytest.raises(ValueError, match="block_rows"):
        patchmap.blocks(X, block_rows=0)
    with pytest.raises(ValueError, match="threads"):
        patchmap.blocks(X, threads=0)
    with pytest.raises(ValueError, match="block_bytes"):
        patchmap.blocks(X, block_bytes="lots")


def test_info():
    img = random_image((3, 20, 30), np.uint8)
    with patchmap.open(img, (4, 5), step=(2, 1), channel_axis=0, padding=1) as m:
        info = m.info
        assert info["out_shape"] == ((20 + 2 - 4) // 2 + 1, 30 + 2 - 5 + 1)
        assert info["windows"] == m.shape[0] == np.prod(info["out_shape"])
        assert info["window_elems"] == m.shape[1] == 4 * 5 * 3
        assert info["channels"] == 3 and info["ld"] == m.shape[1]
        assert m.nbytes == info["bytes"] == m.shape[0] * m.shape[1] * 4
        assert patchmap.info(m.array[3:]) == info


@pytest.mark.parametrize("backend", ["uffd", "sigsegv", "eager"])
def test_take(backend):
    """take() gives X[indices] without faulting the mapping in."""
    img = random_image((120, 130), np.int16, seed=20)
    X = patchmap.windows(img, (6, 5), step=(1, 2), backend=backend, chunk="4k", budget="16k")
    R = reference(img, (6, 5), (1, 2))
    rng = np.random.default_rng(0)
    idx = rng.integers(-X.shape[0], X.shape[0], 500)
    idx[100:140] = np.arange(1000, 1040)  # a run of consecutive rows
    faults = patchmap.stats(X).faults
    assert_bits_equal(patchmap.take(X, idx), R[idx])
    for view, ref in [(X[5:], R[5:]), (X[::3], R[::3]), (X[::-2], R[::-2]),
                      (X[7:900:4], R[7:900:4])]:
        sel = rng.integers(0, view.shape[0], 50)
        assert_bits_equal(patchmap.take(view, sel), ref[sel])
    mask = rng.random(X.shape[0]) < 0.1
    assert_bits_equal(patchmap.take(X, mask), R[mask])
    assert patchmap.take(X, []).shape == (0, 30)
    # numpy.take's shapes: a scalar picks one row, nested indices nest
    assert_bits_equal(patchmap.take(X, 7), np.take(R, 7, axis=0))
    nested = idx[:12].reshape(3, 4)
    assert_bits_equal(patchmap.take(X, nested), np.take(R, nested, axis=0))
    with patchmap.open(img, (6, 5), step=(1, 2), backend=backend) as m:
        assert_bits_equal(m.take(nested), np.take(R, nested, axis=0))
    assert patchmap.stats(X).faults == faults  # nothing faulted in
    with patchmap.open(img, (6, 5), step=(1, 2), backend=backend, row_pitch=128) as m:
        assert_bits_equal(m.take(idx), R[idx])
    for bad in [X[:, 1:], X.T, X[:, ::2]]:
        with pytest.raises(ValueError, match="whole rows"):
            patchmap.take(bad, [0])
    with pytest.raises(IndexError):
        patchmap.take(X, [X.shape[0]])
    with pytest.raises(TypeError):
        patchmap.take(X, [0.5])


@pytest.mark.parametrize("inner", ["uffd", "sigsegv"])
@pytest.mark.parametrize("outer", BACKENDS)
def test_windows_of_windows(inner, outer):
    """A patch matrix is itself a valid source: the outer matrix's fills read
    the inner one lazily (budgets of two small chunks keep both refaulting)."""
    img = random_image((160, 170), np.uint8, seed=9)
    X = patchmap.windows(img, 4, dtype="same", backend=inner, budget="8K", chunk="4K")
    Y = patchmap.windows(X, 2, backend=outer, budget="8K", chunk="4K")
    assert_bits_equal(Y, reference(np.array(X), 2))


def test_take_refuses_unsigned_indices_past_int64():
    # 2**64 - 1 as int64 is -1: it once picked the last row.
    X = patchmap.windows(np.arange(36, dtype=np.float32).reshape(6, 6), 3)
    with pytest.raises(IndexError, match="out of range"):
        patchmap.take(X, np.array([2**64 - 1], np.uint64))
    assert patchmap.take(X, np.array([15], np.uint64))[0, 0] == 21.0
