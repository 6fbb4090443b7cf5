"""Row selections and fold: a patch matrix of some of the windows (indices, a
mask over window positions, a row range, or scikit-learn's random sample),
and the way back from per-window values to an image."""

import collections.abc
import ctypes
import numbers

import numpy as np

from . import _lib as L
from . import _spec
from . import _image
from ._core import PatchMatrix, _Mapping, _build_opts, _owner_of, _row_selection, describe

PM_ROWS_ALL, PM_ROWS_INDEX, PM_ROWS_MASK, PM_ROWS_RANGE = 0, 1, 2, 3
PM_FOLD_SUM, PM_FOLD_MEAN, PM_FOLD_COUNT = 0, 1, 2
_FOLD_MODES = {"sum": PM_FOLD_SUM, "mean": PM_FOLD_MEAN, "count": PM_FOLD_COUNT}


class pm_rows(ctypes.Structure):
    _fields_ = [
        ("size", ctypes.c_size_t),
        ("kind", ctypes.c_int),
        ("index", ctypes.c_void_p),
        ("mask", ctypes.c_void_p),
        ("count", ctypes.c_size_t),
        ("begin", ctypes.c_size_t),
        ("end", ctypes.c_size_t),
    ]


class pm_fold_opts(ctypes.Structure):
    _fields_ = [
        ("size", ctypes.c_size_t),
        ("mode", ctypes.c_int),
        ("data", ctypes.c_void_p),
        ("dtype", ctypes.c_int),
        ("rows", ctypes.c_size_t),
        ("cols", ctypes.c_size_t),
        ("row_stride", ctypes.c_ssize_t),
        ("col_stride", ctypes.c_ssize_t),
        ("out", ctypes.c_void_p),
        ("out_dtype", ctypes.c_int),
        ("out_strides", ctypes.c_ssize_t * L.PM_MAX_DIMS),
        ("matrix", ctypes.c_void_p),
    ]


def _declared():
    lib = L.lib()
    if not getattr(lib, "_subsets_declared", False):
        P = ctypes.POINTER
        lib.pm_matrix_describe_rows.restype = ctypes.c_int
        lib.pm_matrix_describe_rows.argtypes = [P(L.pm_matrix_opts), P(pm_rows),
                                                P(L.pm_matrix_info)]
        lib.pm_matrix_open_rows.restype = ctypes.c_int
        lib.pm_matrix_open_rows.argtypes = [P(L.pm_matrix_opts), P(pm_rows),
                                            P(ctypes.c_void_p)]
        lib.pm_spec_rows.restype = ctypes.c_int
        lib.pm_spec_rows.argtypes = [ctypes.c_void_p, P(L.pm_matrix_opts), P(pm_rows),
                                     P(L.pm_matrix_info)]
        lib.pm_fold.restype = ctypes.c_int
        lib.pm_fold.argtypes = [P(L.pm_matrix_opts), P(pm_rows), P(pm_fold_opts)]
        lib._subsets_declared = True
    return lib


def describe_open(o, sel, info, h):
    """pm_matrix_describe_rows and pm_matrix_open_rows for PatchMatrix."""
    rows, _keep = sel
    lib = _declared()
    L.check(lib.pm_matrix_describe_rows(ctypes.byref(o), ctypes.byref(rows),
                                        ctypes.byref(info)))
    L.check(lib.pm_matrix_open_rows(ctypes.byref(o), ctypes.byref(rows), ctypes.byref(h)))


def _selection(rows=None, mask=None, row_range=None):
    """A (pm_rows, arrays kept alive) pair for the arguments, or None."""
    given = [x is not None for x in (rows, mask, row_range)]
    if sum(given) > 1:
        raise TypeError("give one of rows=, mask= and row_range=")
    r = pm_rows()
    r.size = ctypes.sizeof(r)
    keep = None
    if rows is not None:
        idx = np.asarray(rows)
        if idx.dtype.kind not in "iu" and idx.size:
            raise TypeError("rows must be integers, not %s" % idx.dtype)
        idx = idx.reshape(-1)
        if idx.size and idx.min() < 0:
            raise IndexError("rows: a negative window index (%d)" % idx.min())
        keep = np.ascontiguousarray(idx, dtype=np.uint64)
        r.kind, r.index, r.count = PM_ROWS_INDEX, keep.ctypes.data, keep.size
    elif mask is not None:
        m = np.asarray(mask)
        if m.dtype != np.bool_:
            raise TypeError("mask must be a boolean array over the window positions, not %s"
                            % m.dtype)
        keep = np.ascontiguousarray(m.reshape(-1)).view(np.uint8)
        r.kind, r.mask, r.count = PM_ROWS_MASK, keep.ctypes.data, keep.size
    elif row_range is not None:
        a, b = row_range
        r.kind, r.begin, r.end = PM_ROWS_RANGE, int(a), int(b)
    else:
        return None
    return r, keep


def _where(info):
    shape = "x".join(str(info.out_shape[a]) for a in range(info.nspatial))
    return "%d windows, out_shape %s" % (info.windows, shape)


def resolve(who, o, info, rows=None, mask=None, sample=None, random_state=None,
            range_sel=None):
    """The selection of windows()'s arguments, checked against the full
    matrix's info, with the messages of the other front ends: a (pm_rows,
    arrays kept alive, report dict) triple or None, and the selection's
    info. range_sel: the spec's row_range as pm_spec_rows resolved it."""
    given = [k for k, v in (("rows", rows), ("mask", mask), ("sample", sample)) if v is not None]
    if range_sel is not None and range_sel.kind == PM_ROWS_RANGE:
        given.insert(0, "row_range")
    if random_state is not None and sample is None:
        raise ValueError("%s: random_state: only with sample, whose draw it seeds" % who)
    if len(given) > 1:
        raise ValueError("%s: %s: give one of row_range, rows, mask and sample, not %s and %s"
                         % (who, given[1], given[0], given[1]))
    if not given:
        return None, info
    if given[0] == "row_range":
        r = range_sel
        report = {"kind": "range", "begin": r.begin, "end": r.end}
        return (r, None, report), info
    where = _where(info)
    W = info.windows
    if o.layout != 0:
        raise ValueError("%s: %s: a row selection needs layout rows (one row per window), not "
                         "cols" % (who, given[0]))
    if rows is not None:
        idx = np.asarray(rows)
        if not idx.size:  # [] is float64 to numpy: its dtype is no fault
            raise ValueError("%s: rows: selects no window (it is empty)" % who)
        if idx.dtype.kind not in "iu":
            raise TypeError("%s: rows: window numbers must be integers, not %s" % (who, idx.dtype))
        idx = idx.reshape(-1)
        bad = np.flatnonzero((idx < 0) | (idx >= W)) if idx.dtype.kind == "i" else \
            np.flatnonzero(idx >= W)
        if bad.size:
            i = int(bad[0])
            if idx[i] < 0:
                raise IndexError("%s: rows: window number %d at position %d is negative (%s)"
                                 % (who, idx[i], i, where))
            raise IndexError("%s: rows: window number %d at position %d is past the last "
                             "window (%s): give numbers below %d" % (who, idx[i], i, where, W))
        kind = "index"
    elif mask is not None:
        m = np.asarray(mask)
        if m.dtype != np.bool_:
            raise TypeError("%s: mask: holds %s, not bool: give a bool array of the windows' "
                            "out_shape" % (who, m.dtype))
        out = tuple(info.out_shape[a] for a in range(info.nspatial))
        if m.shape != out:
            raise ValueError("%s: mask: has shape %s; it must have the windows' out_shape %s "
                             "(%d windows)" % (who, "x".join(map(str, m.shape)) or "()",
                                               "x".join(map(str, out)), W))
        idx = np.flatnonzero(m.reshape(-1))
        if not idx.size:
            raise ValueError("%s: mask: selects no window (it is all false)" % who)
        kind = "mask"
    else:
        if isinstance(sample, (bool, np.bool_)) or not isinstance(sample, numbers.Real):
            raise TypeError("%s: sample: %r is not a count of windows (such as 1000) or a "
                            "fraction of them between 0 and 1 (such as 0.01)" % (who, sample))
        if isinstance(sample, numbers.Integral):
            n = int(sample)
            if n < 1:
                raise ValueError("%s: sample: '%d' is not a count of windows (such as 1000) or "
                                 "a fraction of them between 0 and 1 (such as 0.01)"
                                 % (who, n))
            if n > W:
                raise ValueError("%s: sample: %d is more than the %s: give at most %d"
                                 % (who, n, where, W))
        else:
            if not 0 < sample < 1:
                raise ValueError("%s: sample: '%r' is not a count of windows (such as 1000) or "
                                 "a fraction of them between 0 and 1 (such as 0.01)"
                                 % (who, sample))
            n = int(sample * W)  # scikit-learn's _compute_n_patches
            if not n:
                raise ValueError("%s: sample: %.17g of the %s is no window: give a larger "
                                 "fraction or a count" % (who, sample, where))
        # scikit-learn's extract_patches_2d: one randint per spatial axis, in
        # axis order, with replacement
        rng = check_random_state(random_state)
        out = tuple(info.out_shape[a] for a in range(info.nspatial))
        idx = _sample_windows(rng, out, n)
        kind = "sample"
    sel = _selection(rows=idx)
    del idx
    keep = sel[1]
    checksum = 0
    for a in range(0, keep.size, 1 << 20):  # sum of (i + 1) * index[i], modulo 2**64
        part = keep[a:a + (1 << 20)]
        w = np.arange(a + 1, a + 1 + part.size, dtype=np.uint64)
        w *= part
        checksum += int(w.sum(dtype=np.uint64))
    checksum &= (1 << 64) - 1
    report = {"kind": kind, "count": int(keep.size), "checksum": checksum}
    sinfo = L.pm_matrix_info()
    L.check(_declared().pm_matrix_describe_rows(ctypes.byref(o), ctypes.byref(sel[0]),
                                                 ctypes.byref(sinfo)))
    return (sel[0], keep, report), sinfo


# The later axes' draws are made in pieces of this many windows: randint
# gives the same numbers, and leaves the generator in the same state, drawn
# whole or in pieces (tests/test_subsets.py checks it).
_PIECE = 1 << 16


def _sample_windows(rng, out, n):
    """The window numbers of scikit-learn's sample: one rng.randint(k,
    size=n) per spatial axis, in axis order, combined as
    numpy.ravel_multi_index(draws, out) would, as uint64. The first axis is
    drawn whole and the numbers formed in its memory (randint's int64 viewed
    as uint64: the draws are not negative); the later axes are drawn in
    pieces and added in, so that one array of n numbers exists, not one per
    axis."""
    first = rng.randint(out[0], size=n)
    idx = first.view(np.uint64) if first.dtype == np.int64 else first.astype(np.uint64)
    for k in out[1:]:
        idx *= np.uint64(k)
        for a in range(0, n, _PIECE):
            d = rng.randint(k, size=min(_PIECE, n - a))
            idx[a:a + d.size] += d.view(np.uint64) if d.dtype == np.int64 else \
                d.astype(np.uint64)
    return idx


def check_random_state(seed):
    """numpy's RandomState as scikit-learn's check_random_state gives it."""
    if seed is None or seed is np.random:
        return np.random.mtrand._rand
    if isinstance(seed, numbers.Integral):
        return np.random.RandomState(seed)
    if isinstance(seed, np.random.RandomState):
        return seed
    raise ValueError("%r cannot be used to seed a numpy.random.RandomState instance" % (seed,))


def select(image, window_shape, step=None, dilation=None, padding=None, *, rows=None,
           mask=None, row_range=None, **options):
    """The lazy patch matrix of some windows of `image`: row i is window
    rows[i] (any order, repeats allowed), or the windows where the boolean
    `mask` over the window positions is true, or windows row_range[0] to
    row_range[1] - 1. Other arguments as patchmap.windows. The indices are
    copied: the arrays may change after the call."""
    arr, o = _build_opts("patchmap.select", image, window_shape, step=step, dilation=dilation,
                         padding=padding, **options)
    sel = _selection(rows, mask, row_range)
    return PatchMatrix._from_opts(arr, o, sel).array


def _n_patches(i_h, i_w, p_h, p_w, max_patches):
    n_h, n_w = i_h - p_h + 1, i_w - p_w + 1
    total = n_h * n_w
    if max_patches:
        if isinstance(max_patches, numbers.Integral) and max_patches < total:
            return max_patches
        if isinstance(max_patches, numbers.Integral) and max_patches >= total:
            return total
        if isinstance(max_patches, numbers.Real) and 0 < max_patches < 1:
            return int(max_patches * total)
        raise ValueError("Invalid value for max_patches: %r" % (max_patches,))
    return total


def extract_patches_2d(image, patch_size, max_patches=None, random_state=None, *,
                       return_shape=False, **options):
    """scikit-learn's extract_patches_2d as a lazy 2-D matrix: one row per
    patch (p_h * p_w * n_colors values, the image's dtype), drawn exactly as
    scikit-learn 1.2 draws them (randint for the rows, then for the columns,
    with replacement), so that X.reshape(shape) equals its result bit for
    bit. return_shape=True also returns that 4-D (or 3-D) shape."""
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ValueError("extract_patches_2d: the image must be 2-D or 3-D (colors last)")
    i_h, i_w = image.shape[:2]
    p_h, p_w = patch_size
    if p_h > i_h:
        raise ValueError("Height of the patch should be less than the height of the image.")
    if p_w > i_w:
        raise ValueError("Width of the patch should be less than the width of the image.")
    n = _n_patches(i_h, i_w, p_h, p_w, max_patches)
    sel = None
    if max_patches:
        # i_s = randint(i_h - p_h + 1), then j_s = randint(i_w - p_w + 1):
        # window i_s * (i_w - p_w + 1) + j_s
        rows = _sample_windows(check_random_state(random_state),
                               (i_h - p_h + 1, i_w - p_w + 1), n)
        sel = _selection(rows=rows) if n else None
        del rows
    options.setdefault("dtype", "same")
    arr, o, info = _build_opts("patchmap.extract_patches_2d", image, (p_h, p_w),
                               channel_axis=2 if image.ndim == 3 else None, want_info=True,
                               **options)
    if sel is None and max_patches:
        # a fraction of no window: scikit-learn returns an empty array, and
        # a matrix of no row cannot be opened
        X = np.empty((0, info.cols), _spec.numpy_dtype(info.dtype))
    else:
        X = PatchMatrix._from_opts(arr, o, sel).array
    colors = image.shape[2] if image.ndim == 3 else 1
    shape = (n, p_h, p_w) if colors == 1 else (n, p_h, p_w, colors)
    return (X, shape) if return_shape else X


def _over_mapping(X):
    """(X is over a lazy matrix's mapping, the matrix's handle when X is
    that whole matrix and the library may read it itself)."""
    try:
        owner = _owner_of(X)
    except TypeError:
        return False, None
    if not isinstance(X, np.ndarray) or not isinstance(owner, _Mapping):
        return True, None
    try:
        _, first, count, stride = _row_selection(X, "patchmap.fold", "")
    except ValueError:  # not whole rows (or no mapping)
        return True, None
    whole = first == 0 and stride == 1 and count == owner.info["rows"]
    # imread sources read through libpatchmap-image's guarded calls
    if not whole or _image.guarded(owner.source)[2] is not None:
        return True, None
    return True, owner.handle()


def _over_image(X):
    """X is part of a lazy matrix over an imread image: read through its
    mapping, a part of the image that fails to decode would raise SIGBUS
    in the matrix's filler thread."""
    if not isinstance(X, np.ndarray):
        return False
    try:
        owner = _owner_of(X)
    except TypeError:
        return False
    return isinstance(owner, _Mapping) and _image.guarded(owner.source)[2] is not None


def fold(X, image_shape, window_shape, step=None, dilation=None, padding=None, *,
         mode="sum", dtype=np.float64, channel_axis=None, order=None, layout=None,
         pad_mode=None, rows=None, mask=None, row_range=None, threads=None):
    """Adds every row of X (one per window of an image of `image_shape`, or
    per selected window) back into the image: mode "sum" (torch's fold),
    "mean" (divided by the number of contributions) or "count". X has
    window_elems, channels or 1 columns (transposed for layout="cols").
    Contributions that fall in the padding are dropped. Float32 or float64
    output; summation in matrix order. threads: how many threads share the
    image in bands of rows (default: the CPUs, at most 8; one when X is part
    of a lazy matrix, whose filler threads need the CPUs); the result does
    not depend on it. A whole lazy matrix (windows()'s array itself) is
    read by the fold's threads with pm_matrix_read, not through its
    mapping. A lazy matrix over an imread image is read in blocks by
    libpatchmap-image's reads, where a part of the image that fails to
    decode raises patchmap.ImageError, and folded as an iterator of those
    blocks would be (with rows= or mask=, read whole first).

    X may also be an iterator (a generator, say) of row blocks: consecutive
    runs of rows, in matrix order, that together hold every row (all
    windows, or those of row_range; layout "rows" only; not with rows= or
    mask=). Each block is folded into the rows of the image its windows
    cover and added to the output as it comes, so a matrix that is
    computed block by block (a model's output for every window of a lazy
    matrix) is never held whole: memory is the output (and, for "mean",
    the counts) plus one block and its part of the image. A block is
    folded before the next one is drawn, so a generator may reuse one
    buffer for all of them. The sums follow the blocks: each block's rows
    added in matrix order, then the blocks' sums added in block order, so
    float results may differ from folding the whole matrix at once by
    rounding (they are equal where the sums are exact, as for integer
    values below 2**24 in float32 or 2**53 in float64); the counts are
    exact."""
    shape = tuple(int(x) for x in image_shape)
    geom = np.broadcast_to(np.zeros(1, np.uint8), shape)
    lazy, matrix = _over_mapping(X)
    if threads is None and lazy and matrix is None:
        # A lazy matrix read through its mapping is filled by its own
        # threads: they need the other CPUs more than a second reader does.
        threads = 1
    _, o = _build_opts("patchmap.fold", geom, window_shape, step=step, dilation=dilation,
                       padding=padding, pad_mode=pad_mode, channel_axis=channel_axis,
                       order=order, layout=layout, threads=threads)
    if str(mode).lower() not in _FOLD_MODES:
        raise ValueError("mode must be \"sum\", \"mean\" or \"count\", not %r" % (mode,))
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError("fold: the output dtype must be float32 or float64, not %s" % dt)
    if _over_image(X):
        from ._core import blocks
        try:
            parts = blocks(X, block_bytes="16M", threads=1)
        except (TypeError, ValueError):  # not whole rows: through the mapping
            parts = None
        if parts is not None and rows is None and mask is None and \
                str(layout or "rows").lower() == "rows":
            X = parts
        elif parts is not None:
            X = np.concatenate(list(parts)) if X.shape[0] else np.asarray(X)
    if isinstance(X, collections.abc.Iterator):
        if rows is not None or mask is not None:
            raise ValueError("fold: X is an iterator of consecutive row blocks: select them "
                             "with row_range=, not rows= or mask=")
        geometry = dict(step=step, dilation=dilation, padding=padding, pad_mode=pad_mode,
                        channel_axis=channel_axis, order=order, layout=layout)
        return _fold_blocks(X, o, shape, window_shape, geometry, str(mode).lower(), dt,
                            row_range, threads)
    X = np.asarray(X)
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2:
        raise ValueError("fold: X must be 2-D (windows x values), not %d-D" % X.ndim)
    if X.dtype.byteorder == ">":  # big-endian (a .npy written elsewhere): in the machine's order
        X = X.astype(X.dtype.newbyteorder("="))
    try:  # the library's dtype, from its own parser
        x_dtype = _spec.source_dtype(X.dtype)
    except TypeError:
        raise TypeError("fold: unsupported input dtype %s" % X.dtype) from None
    out = np.empty(shape, dt)
    f = _fold_opts(_FOLD_MODES[str(mode).lower()], out)
    f.data = X.ctypes.data
    f.dtype = x_dtype
    f.rows, f.cols = X.shape
    # Explicit strides (a packed input would have them anyway); 0, 0 means
    # packed to the library, so a 1-row broadcast still works.
    f.row_stride, f.col_stride = X.strides
    if X.strides == (0, 0):
        X = np.ascontiguousarray(X)
        f.data = X.ctypes.data
        f.row_stride, f.col_stride = X.strides
    if matrix is not None:
        # the whole matrix: each thread of the fold reads (fills) its own
        # rows, and the mapping is not touched
        f.data = None
        f.matrix = matrix
    _pm_fold(o, _selection(rows, mask, row_range), f)
    return out


def _fold_opts(mode, out):
    """A pm_fold_opts writing `out` (float32 or float64, any strides); the
    input is the caller's to set."""
    f = pm_fold_opts()
    f.size = ctypes.sizeof(f)
    f.mode = mode
    f.out = out.ctypes.data
    f.out_dtype = L.PM_DTYPE_F32 if out.dtype == np.float32 else L.PM_DTYPE_F64
    for i, s in enumerate(out.strides):
        f.out_strides[i] = s
    return f


def _pm_fold(o, sel, f):
    L.check(_declared().pm_fold(ctypes.byref(o), ctypes.byref(sel[0]) if sel else None,
                                ctypes.byref(f)))


def fold_span(opts, matrix, axis_len, r0, r1):
    """The part of the image the windows r0 .. r1-1 add to: the range
    [lo, hi) along the first spatial axis (fold drops what falls in the
    padding), and the padding (before, after) along that axis of the crop
    [lo, hi) under which those windows are the crop's windows of rows
    r0 - first .. r1 - first, `first` being returned too. None if they
    cover padding only. opts, matrix: describe()'s "options" and
    "matrix"."""
    out = matrix["out_shape"]
    inner = int(np.prod(out[1:], dtype=np.int64)) if len(out) > 1 else 1
    p_lo, p_hi = r0 // inner, (r1 - 1) // inner
    k, step, dil = opts["window"][0], opts["step"][0], opts["dilation"][0]
    start = p_lo * step - opts["pad_before"][0]        # the first window's first row
    end = p_hi * step - opts["pad_before"][0] + (k - 1) * dil + 1  # past the last one's last
    lo, hi = max(start, 0), min(end, axis_len)
    if lo >= hi:
        return None
    # Windows p_lo .. p_hi of the full image are windows 0 .. p_hi - p_lo
    # of rows [lo, hi) padded by (lo - start, end - hi): the padded length
    # is (p_hi - p_lo) * step + the window's extent.
    return lo, hi, (lo - start, end - hi), p_lo * inner


def fold_slab(Y, r0, r1, image_shape, window_shape, d, mode, dtype, axis, threads=None):
    """Rows [r0, r1) of the matrix described by d (describe()'s dict), Y,
    folded into the rows of the image they cover only: (offset along
    `axis`, the first spatial axis, and that slab), or None. threads: as
    fold's."""
    o = d["options"]
    span = fold_span(o, d["matrix"], image_shape[axis], r0, r1)
    if span is None:
        return None
    lo, hi, pad0, first = span
    shape = list(image_shape)
    shape[axis] = hi - lo
    # Explicit padding, the crop's along the first spatial axis; the mode
    # does not matter: fold drops contributions that fall in the padding.
    padding = [pad0] + [(b, a) for b, a in zip(o["pad_before"][1:], o["pad_after"][1:])]
    slab = fold(Y, tuple(shape), window_shape, step=o["step"], dilation=o["dilation"],
                padding=padding, pad_mode="zero", channel_axis=o["channel_axis"],
                order=o["order"], mode=mode, dtype=dtype, row_range=(r0 - first, r1 - first),
                threads=threads)
    return lo, slab


def _fold_blocks(blocks, o, shape, window_shape, geometry, mode, dt, row_range, threads):
    """fold() of an iterator of consecutive row blocks: see fold()."""
    d = describe(np.broadcast_to(np.zeros(1, np.uint8), shape), window_shape,
                 row_range=row_range, **geometry)
    if d["options"]["layout"] != "rows":
        raise ValueError("fold: X is an iterator of row blocks: the layout must be \"rows\" "
                         "(one row per window), not %r" % d["options"]["layout"])
    ranged = d["rows"]["kind"] == "range"
    begin, end = (d["rows"]["begin"], d["rows"]["end"]) if ranged else \
        (0, d["matrix"]["windows"])
    axis = 1 if d["options"]["channel_axis"] == 0 else 0  # the first spatial axis
    out = np.zeros(shape, dt)
    r = begin
    for i, B in enumerate(blocks):
        B = np.asarray(B)
        if B.ndim == 1:
            B = B[:, None]
        if B.ndim != 2:
            raise ValueError("fold: block %d of X must be 2-D (windows x values), not %d-D"
                             % (i, B.ndim))
        n = B.shape[0]
        if n > end - r:
            raise ValueError("fold: the blocks of X hold more rows than the %d windows to "
                             "fold (block %d ends at row %d)" % (end - begin, i, r - begin + n))
        if n:
            part = fold_slab(B, r, r + n, shape, window_shape, d, "sum", dt, axis, threads)
            if part is not None:
                lo, slab = part
                index = [slice(None)] * out.ndim
                index[axis] = slice(lo, lo + slab.shape[axis])
                out[tuple(index)] += slab
        r += n
    if r != end:
        raise ValueError("fold: the blocks of X hold %d rows; the geometry has %d windows to "
                         "fold" % (r - begin, end - begin))
    if mode == "sum":
        return out
    counts = np.empty(shape, dt)
    f = _fold_opts(PM_FOLD_COUNT, counts)
    f.rows, f.cols = end - begin, 1
    _pm_fold(o, _selection(row_range=(begin, end)) if ranged else None, f)
    if mode == "count":
        return counts
    # A pixel no window covers has the sum 0: dividing it by 1 keeps the 0
    # the library's mean gives it, with no mask as large as the image.
    np.maximum(counts, 1, out=counts)
    np.divide(out, counts, out=out)
    return out


def reconstruct_from_patches_2d(patches, image_size):
    """scikit-learn's reconstruct_from_patches_2d through the library: the
    patches (n, p_h, p_w[, colors]) of every window in order, or their 2-D
    matrix, averaged into a float64 image of image_size. Each pixel is the
    mean of the patches covering it; this equals scikit-learn's result bit
    for bit when each side is at least 2 * patch - 1 (below that,
    scikit-learn's divisor is not the number of patches covering a pixel)."""
    image_size = tuple(int(x) for x in image_size)
    p = np.asarray(patches)
    if p.ndim in (3, 4):
        p_h, p_w = p.shape[1:3]
        p = p.reshape(p.shape[0], -1)
    else:
        raise ValueError("reconstruct_from_patches_2d: patches must be (n, p_h, p_w[, colors])")
    return fold(p, image_size, (p_h, p_w), mode="mean",
                channel_axis=2 if len(image_size) == 3 else None)
