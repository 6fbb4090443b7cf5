"""patchmap.dask: the patch matrix as a dask.array, built on the workers.

    >>> import patchmap.dask
    >>> X = patchmap.dask.windows("image.npy", (16, 16), block_rows=65536)
    >>> (X @ W).compute()                       # doctest: +SKIP

The graph holds one task per block of consecutive matrix rows. A task opens
the source on the worker that runs it and builds a lazy row-range matrix
(libpatchmap's PM_ROWS_RANGE) of its rows: nothing but the source's
description travels to a worker, and a worker touches only the source rows
its windows read. The matrix itself is never sent anywhere; a block is sent
only if dask moves it between workers, and then as the block's bytes. Where
the kernel cannot read lazy pages (the SIGSEGV backend, userfaultfd in user
mode: an unprivileged user on Debian), a block is read into an ordinary
array on its worker, as the kernel must read what distributed sends.

Sources:
  - a path: a .npy file (memory-mapped on the worker), or any image
    patchmap.imread reads (when libpatchmap-image is installed);
  - a numpy.memmap (sent as its file name, offset, dtype, shape and order);
  - a dask.array of the image: each block depends on the slab of source rows
    its windows read, and only that slab is computed for it;
  - a small numpy array (sent with the graph, once per task that needs it).
"""

import numbers
import os

import numpy as np

from . import _core, _image, _subsets

__all__ = ["windows", "fold", "source_rows"]


# ---------------------------------------------------------------- sources


class _Path:
    """A source named by its path; opened (and cached) on each worker."""

    def __init__(self, path, kind, offset=0, dtype=None, shape=None, order="C"):
        self.path = os.fspath(path)
        self.kind = kind          # "npy", "raw" (a memmap's file) or "image"
        self.offset = offset
        self.dtype = None if dtype is None else np.dtype(dtype).str
        self.shape = None if shape is None else tuple(int(n) for n in shape)
        self.order = order

    def key(self):
        return (self.path, self.kind, self.offset, self.dtype, self.shape, self.order)

    def open(self):
        if self.kind == "npy":
            return np.load(self.path, mmap_mode="r", allow_pickle=False)
        if self.kind == "raw":
            return np.memmap(self.path, dtype=np.dtype(self.dtype), mode="r",
                             offset=self.offset, shape=self.shape, order=self.order)
        from . import imread  # libpatchmap-image: decoded lazily, under its own budget
        return imread(self.path)


_opened = {}


def _open(src):
    """The source array on this process, opened once per process and file:
    a file replaced or rewritten under the same name (another inode, size
    or modification time) is opened again, never read from a stale map."""
    if not isinstance(src, _Path):
        return src
    try:
        st = os.stat(src.path)
        k = src.key()
        stamp = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        hit = _opened.get(k)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        arr = src.open()
    except OSError as e:
        raise OSError("patchmap.dask: cannot open the source %r on this worker: %s"
                      % (src.path, e.strerror or e)) from None
    _opened[k] = (stamp, arr)
    return arr


def _as_source(source):
    """A picklable description of `source`, and an array-like with its shape
    and dtype (no data read) for describing the matrix here."""
    try:
        import dask.array as da
    except ImportError:  # pragma: no cover - dask is a dependency of this module
        da = None
    if isinstance(source, (str, bytes, os.PathLike)):
        path = os.fsdecode(source)
        if path.endswith(".npy"):
            src = _Path(path, "npy")
        else:
            src = _Path(path, "image")
        return src, _open(src)
    if isinstance(source, np.memmap):
        # A slice of a memmap is a memmap whose base is the memmap it was cut
        # from: only the mapping numpy.memmap opened names its file range.
        if isinstance(source.base, np.memmap) or source.filename is None:
            raise ValueError("patchmap.dask: a numpy.memmap source must be the mapping "
                             "numpy.memmap returned, not a slice or view of it; open the "
                             "part you need with numpy.memmap(..., offset=, shape=)")
        order = "F" if source.flags.f_contiguous and not source.flags.c_contiguous else "C"
        src = _Path(source.filename, "raw", source.offset, source.dtype, source.shape, order)
        return src, source
    if da is not None and isinstance(source, da.Array):
        return source, source
    arr = np.asarray(source)
    return arr, arr


# ---------------------------------------------------------------- geometry


def _remap(c, n, mode):
    """Padded coordinates c (an int array) to the source coordinates they
    read, for the padding modes that read the source (numpy.pad's)."""
    if mode == "edge":
        return np.clip(c, 0, n - 1)
    if mode == "reflect":
        if n == 1:
            return np.zeros_like(c)
        m = np.mod(c, 2 * (n - 1))
        return np.where(m < n, m, 2 * (n - 1) - m)
    if mode == "symmetric":
        m = np.mod(c, 2 * n)
        return np.where(m < n, m, 2 * n - 1 - m)
    return np.mod(c, n)  # wrap


def source_rows(options, matrix, axis_len, r0, r1):
    """The range [lo, hi) of indices along the first spatial axis of the
    source that the windows r0 .. r1-1 read, from the resolved options and
    matrix of patchmap.describe, for a source of axis_len indices along
    that axis. Empty (lo == hi) if they read padding only."""
    out = matrix["out_shape"]
    inner = int(np.prod(out[1:], dtype=np.int64)) if len(out) > 1 else 1
    p_lo, p_hi = r0 // inner, (r1 - 1) // inner
    k, step, dil = options["window"][0], options["step"][0], options["dilation"][0]
    pb = options["pad_before"][0]
    c_lo = p_lo * step - pb
    c_hi = p_hi * step - pb + (k - 1) * dil
    mode = options["pad_mode"]
    if mode in ("zero", "constant") or (c_lo >= 0 and c_hi < axis_len):
        lo, hi = max(c_lo, 0), min(c_hi + 1, axis_len)
        return (lo, hi) if lo < hi else (0, 0)
    # Every coordinate some window of the range reads, remapped.
    pos = np.arange(p_lo, p_hi + 1, dtype=np.int64) * step - pb
    c = (pos[:, None] + np.arange(k, dtype=np.int64)[None, :] * dil).ravel()
    s = _remap(c, axis_len, mode)
    return int(s.min()), int(s.max()) + 1


def _stand_in(shape, dtype):
    """An array of this shape and dtype that holds one element: enough to
    describe a matrix (which reads no sample) without reading the source."""
    one = np.zeros(1, dtype=dtype)
    return np.lib.stride_tricks.as_strided(one, shape=shape, strides=(0,) * len(shape),
                                           writeable=False)


class _Shifted:
    """The source as the library must see it for a slab of rows [lo, hi) of
    axis `axis`: the full shape, with the data pointer where row 0 would be.
    The library reads only the rows the block's windows read, which
    source_rows() put in the slab; nothing else reads this array."""

    def __init__(self, slab, lo, axis, shape):
        self._slab = slab  # kept alive by the array made from this object
        data = slab.ctypes.data - lo * slab.strides[axis]
        self.__array_interface__ = {"version": 3, "shape": tuple(shape),
                                    "typestr": slab.dtype.str, "data": (data, True),
                                    "strides": slab.strides}


# ---------------------------------------------------------------- tasks


def _worker():
    """The distributed worker running this task (whose results distributed
    may send to another process), or None."""
    try:
        from distributed import get_worker
        return get_worker()
    except (ImportError, ValueError):
        return None


def _worker_room():
    """(bytes one task of this Dask worker may still take, the worker's
    address, its memory_limit, its threads), or None outside a worker or for
    a worker without a memory limit. A worker runs up to `nthreads` tasks
    at once, each with its own block: each gets an equal share of what the
    limit leaves above the worker's resident memory now."""
    w = _worker()
    if w is None:
        return None
    mm = getattr(w, "memory_manager", None)
    limit = getattr(mm, "memory_limit", None) if mm is not None else None
    if limit is None:
        limit = getattr(w, "memory_limit", None)
    if not limit:
        return None
    try:
        import psutil
        rss = psutil.Process().memory_info().rss
    except ImportError:  # pragma: no cover - psutil is a dependency of distributed
        with open("/proc/self/statm") as f:
            rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    state = getattr(w, "state", None)  # distributed >= 2022.11 keeps nthreads there
    n = getattr(state, "nthreads", None) if state is not None else None
    nthreads = max(1, int(n if n is not None else getattr(w, "nthreads", 1) or 1))
    return max(0, int(limit) - rss) // nthreads, str(w.address), int(limit), nthreads


def _fmt(n):
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return ("%d %s" if unit == "bytes" else "%.1f %s") % (n, unit)
        n /= 1024


def _fit_options(options, window_shape, shape, dtype, r0, r1, room=None):
    """The options of one block's matrix on this worker: the same budget
    rule as the library's (see PM_DEFAULT_BUDGET), against the worker's
    memory_limit. The default budget is at most half of this task's share
    of it; a budget, an eager block or an unlimited budget whose resident
    bound is larger than that share is refused (patchmap.OutOfMemory). The
    library then applies its own rule (the process's cgroup) at open."""
    room = _worker_room() if room is None else room
    if room is None:
        return options
    share, address, limit, nthreads = room
    L = _core.L
    chunk = _core.parse_size(options.get("chunk") or L.PM_DEFAULT_CHUNK, "chunk")
    backend = options.get("backend") or "auto"
    budget = options.get("budget")
    if budget is None and backend not in ("eager", "none"):
        fit = min(L.PM_DEFAULT_BUDGET, share // L.PM_DEFAULT_BUDGET_SHARE)
        return dict(options, budget=max(fit, 2 * chunk))
    if backend == "none":
        return options
    d = _core.describe(_stand_in(tuple(shape), dtype), window_shape, **options)
    mat = d["matrix"]
    block = (r1 - r0) * mat["ld"] * np.dtype(mat["dtype"]).itemsize
    budget = L.PM_BUDGET_UNLIMITED if budget is None else _core.parse_size(budget, "budget")
    if backend == "eager" or budget == L.PM_BUDGET_UNLIMITED:
        resident, what = block, "%s would keep all %s of the block resident" % (
            "backend eager" if backend == "eager" else "budget unlimited", _fmt(block))
    else:
        resident = min(max(budget // chunk, 2) * chunk, block)
        what = "the budget asks %s" % _fmt(resident)
    if resident > share:
        raise _core.L.OutOfMemory(
            "patchmap.dask: the memory limit of the Dask worker %s (%s, %d task%s at once) "
            "allows %s more per task; %s; give a smaller budget, or none: the default fits"
            % (address, _fmt(limit), nthreads, "s" if nthreads > 1 else "", _fmt(share), what))
    return options


def _range_matrix(img, window_shape, r0, r1, options):
    """Rows [r0, r1) of the patch matrix of img: a lazy array, or on a Dask
    worker whose kernel cannot read lazy pages, an ordinary one.

    distributed sends a block between processes by handing its buffer to
    the kernel (socket.send). The kernel faults lazy pages in only with
    userfaultfd in full (root, or vm.unprivileged_userfaultfd=1); with the
    SIGSEGV backend or userfaultfd in user mode (an unprivileged user on
    Debian) it gets EFAULT, and distributed retries the transfer for ever.
    There the block is read into memory (pm_matrix_read) before dask sees
    it, and must fit this task's share of the worker's memory limit. So is
    a block over an image decoded by libpatchmap-image (imread), on any
    scheduler: there a part that fails to decode is an ImageError from
    the read, not a SIGBUS that ends the worker."""
    from . import select
    room = _worker_room()
    options = _fit_options(options, window_shape, img.shape, img.dtype, r0, r1, room)
    X = select(img, window_shape, row_range=(r0, r1), **options)
    st = _core.stats(X)
    if _image.guarded(_core._owner_of(X).source)[2] is not None:
        # over an imread image, a part that fails to decode is an
        # ImageError from the image library's reads; through the mapping
        # it would be a SIGBUS that ends the worker
        why = "the source is an image decoded by libpatchmap-image"
    elif _worker() is not None and st.backend not in ("eager", "none") and \
            "uffd_full" not in st.mechanisms:
        why = "the kernel cannot read the lazy pages here (backend %s%s)" % (
            st.backend, ", user mode only" if "uffd_user_only" in st.mechanisms else "")
    else:
        return X  # (outside a distributed worker nothing sends the block)
    if room is not None and X.nbytes > room[0]:
        share, address, limit, nthreads = room
        raise _core.L.OutOfMemory(
            "patchmap.dask: %s, so a block is read into memory on its worker, and the "
            "block of %s is more than the %s per task that the memory limit of the Dask "
            "worker %s (%s, %d task%s at once) allows; give smaller blocks (block_rows= or "
            "block_bytes=)" % (why, _fmt(X.nbytes), _fmt(share), address, _fmt(limit),
                               nthreads, "s" if nthreads > 1 else ""))
    return _core.take(X, np.arange(X.shape[0]))


def _block(src, r0, r1, window_shape, options):
    return _range_matrix(_open(src), window_shape, r0, r1, options)


def _slab_block(slab, lo, r0, r1, axis, shape, window_shape, options):
    slab = np.asarray(slab)
    return _range_matrix(np.asarray(_Shifted(slab, lo, axis, shape)), window_shape, r0, r1,
                         options)


class _Call:
    """A picklable task callable carrying the window and options (dask
    would read a dict among a task's arguments as data to traverse)."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __call__(self, *front):
        return self.fn(*front, *self.args)


# ---------------------------------------------------------------- API


def windows(source, window_shape, *, block_rows=None, block_bytes="64M", **options):
    """The patch matrix of `source` as a dask.array.Array of row blocks.

    source: a path (.npy, or an image patchmap.imread reads), a numpy.memmap,
        a dask.array of the image, or a small numpy array.
    window_shape, **options: as patchmap.windows (dtype, padding, order,
        budget, backend, ...); `budget` and `backend` apply to each block's
        lazy matrix on its worker, so a worker holds at most `budget` of
        matrix per block it works on at once. On a worker with a
        memory_limit, each of its threads' tasks gets an equal share of what
        the limit leaves: the default budget is at most half of that share,
        and a budget (or an eager or unlimited block) larger than the share
        is refused on the worker with patchmap.OutOfMemory naming the
        worker's limit; the library refuses what the worker's cgroup cannot
        hold as well.
    block_rows: rows per block; default: as many as fit block_bytes.
    block_bytes: the block size in bytes when block_rows is None ("64M").

    The result equals patchmap.windows(source, window_shape, **options)
    element for element; layout="cols" is refused (blocks are row ranges),
    and so are the row selections rows=, mask=, row_range=, sample= and
    random_state=: index the result instead (X[rows], X[a:b]).
    """
    import dask.array as da
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph

    picked = [k for k in ("rows", "mask", "row_range", "sample", "random_state")
              if options.get(k) is not None]
    if picked:
        raise ValueError("patchmap.dask.windows: %s= not taken (blocks are ranges of all the "
                         "windows); index the result instead, X[rows] or X[a:b], which dask "
                         "computes block by block" % "=, ".join(picked))
    src, here = _as_source(source)
    d = _core.describe(_stand_in(tuple(here.shape), here.dtype), window_shape, **options)
    opts, mat = d["options"], d["matrix"]
    if opts["layout"] != "rows":
        raise ValueError("patchmap.dask.windows: layout must be \"rows\" (blocks are ranges "
                         "of windows); transpose the result instead")
    rows, cols, dtype = mat["rows"], mat["cols"], np.dtype(mat["dtype"])
    if block_rows is None:
        row_bytes = max(1, mat["ld"] * dtype.itemsize)
        block_rows = max(1, _core.parse_size(block_bytes, "block_bytes") // row_bytes)
    if isinstance(block_rows, bool) or not isinstance(block_rows, numbers.Integral) \
            or block_rows < 1:
        raise ValueError("patchmap.dask.windows: block_rows must be a positive integer, not %r"
                         % (block_rows,))
    block_rows = int(block_rows)
    starts = list(range(0, rows, block_rows))
    sizes = tuple(min(block_rows, rows - r0) for r0 in starts)
    name = "patchmap-windows-" + tokenize(
        src if not isinstance(src, _Path) else src.key(), window_shape, options, block_rows)
    layer, deps = {}, []
    axis = 1 if opts["channel_axis"] == 0 else 0  # the first spatial axis
    if isinstance(src, np.ndarray):
        src_key = name + "-source"
        layer[src_key] = src
    if hasattr(src, "dask") and hasattr(src, "chunks"):  # a dask.array
        call = _Call(_slab_block, axis, tuple(here.shape), window_shape, options)
        for i, r0 in enumerate(starts):
            r1 = r0 + sizes[i]
            lo, hi = source_rows(opts, mat, here.shape[axis], r0, r1)
            if lo == hi:  # the block reads padding only: any one row will do
                lo, hi = 0, 1
            index = [slice(None)] * src.ndim
            index[axis] = slice(lo, hi)
            slab = src[tuple(index)]
            slab = slab.rechunk(slab.shape)  # one key: the whole slab
            deps.append(slab)
            layer[(name, i, 0)] = (call, (slab.name,) + (0,) * slab.ndim, lo, r0, r1)
    else:
        call = _Call(_block, window_shape, options)
        ref = src_key if isinstance(src, np.ndarray) else src
        for i, r0 in enumerate(starts):
            layer[(name, i, 0)] = (call, ref, r0, r0 + sizes[i])
    graph = HighLevelGraph.from_collections(name, layer, dependencies=deps)
    return da.Array(graph, name, chunks=(sizes, (cols,)), dtype=dtype)


def _fold_block(Y, r0, r1, image_shape, window_shape, mode, dtype, geometry, axis):
    """Rows [r0, r1) of the matrix folded into the rows of the image they
    cover only: (offset along `axis`, that slab), or None."""
    d = _core.describe(_stand_in(image_shape, np.uint8), window_shape, **geometry)
    return _subsets.fold_slab(Y, r0, r1, image_shape, window_shape, d, mode, dtype, axis)


def _add(a, b, axis):
    """The sum of two partials (offset, slab) along `axis`; either may be
    None. Each pixel of the result is a + b, or a or b alone where the
    other does not reach (and 0 where neither does)."""
    if a is None or b is None:
        return a if b is None else b
    (la, sa), (lb, sb) = a, b
    lo = min(la, lb)
    hi = max(la + sa.shape[axis], lb + sb.shape[axis])
    if la == lo and la + sa.shape[axis] == hi:
        out = sa.copy()
    else:
        shape = list(sa.shape)
        shape[axis] = hi - lo
        out = np.zeros(shape, sa.dtype)
        _at(out, axis, la - lo, sa.shape[axis])[...] = sa
    _at(out, axis, lb - lo, sb.shape[axis])[...] += sb
    return lo, out


def _at(arr, axis, start, n):
    index = [slice(None)] * arr.ndim
    index[axis] = slice(start, start + n)
    return arr[tuple(index)]


def _place(part, shape, dtype, axis):
    """The partial (offset, slab) as the whole image."""
    out = np.zeros(shape, dtype)
    if part is not None:
        lo, slab = part
        _at(out, axis, lo, slab.shape[axis])[...] = slab
    return out


def _tree(parts, axis):
    """Sums delayed partials pairwise in a fixed order (block order,
    whatever the scheduler), so that every run gives the same bits and no
    task holds more than two partials and their sum."""
    import dask

    while len(parts) > 1:
        parts = [dask.delayed(_add)(parts[i], parts[i + 1], axis) if i + 1 < len(parts)
                 else parts[i] for i in range(0, len(parts), 2)]
    return parts[0]


def _mean(total, counts):
    out = np.zeros_like(total)
    np.divide(total, counts, out=out, where=counts > 0)
    return out


def fold(Y, image_shape, window_shape, *, mode="sum", dtype=np.float64, **geometry):
    """Folds per-window results back into the image on the workers: each row
    block of Y (a dask.array with one row per window, in matrix order, as
    patchmap.dask.windows makes it; or one value per window) is folded into
    a partial image that spans only the rows of the image its windows
    cover (along the first spatial axis; its offset travels with it), and
    the partials are summed pairwise in block order. window_shape is the
    window of the matrix Y was computed from (as given to
    patchmap.dask.windows). mode "sum", "mean" (the sums over the counts of
    contributions, as patchmap.fold's mean) or "count"; geometry: step,
    dilation, padding, pad_mode, channel_axis, order, row_pitch, as for
    patchmap.fold (layout "rows" only). Returns a dask.array of image_shape.

    Equal to patchmap.fold(Y.compute(), ...) bit for bit for integer-valued
    data whose sums are exact in `dtype` (below 2**24 in float32, 2**53 in
    float64). Otherwise a pixel covered by windows of several blocks gets
    each block's sum (its rows added in matrix order, as one process adds
    them) and then those sums added pairwise in block order, where one
    process adds all its rows one by one: the results then differ by
    rounding only. The counts of "count" and "mean" are exact."""
    import dask
    import dask.array as da

    mode = str(mode).lower()
    if mode not in ("sum", "mean", "count"):
        raise ValueError("patchmap.dask.fold: mode must be \"sum\", \"mean\" or \"count\", "
                         "not %r" % (mode,))
    if str(geometry.get("layout", "rows")).lower() != "rows":
        raise ValueError("patchmap.dask.fold: layout must be \"rows\" (blocks are ranges of "
                         "windows)")
    if not isinstance(Y, da.Array):
        Y = da.from_array(np.asarray(Y), chunks=(max(1, len(Y)),) + np.shape(Y)[1:])
    if Y.ndim == 2:
        Y = Y.rechunk({1: -1})
    shape = tuple(int(n) for n in image_shape)
    dt = np.dtype(dtype)
    # Checks the geometry here, once, with the error a single-process fold gives.
    d = _core.describe(_stand_in(shape, np.uint8), window_shape,
                       **geometry)
    if d["matrix"]["rows"] != Y.shape[0]:
        raise ValueError("patchmap.dask.fold: Y has %d rows, the geometry %d windows"
                         % (Y.shape[0], d["matrix"]["rows"]))
    axis = 1 if d["options"]["channel_axis"] == 0 else 0  # the first spatial axis
    blocks = Y.to_delayed().reshape(-1)
    r0, sums, counts = 0, [], []
    for blk, n in zip(blocks, Y.chunks[0]):
        for m, parts in (("sum", sums), ("count", counts)):
            if mode in (m, "mean"):
                parts.append(dask.delayed(_fold_block)(blk, r0, r0 + n, shape, window_shape,
                                                       m, dt, geometry, axis))
        r0 += n
    place = lambda part: dask.delayed(_place)(_tree(part, axis), shape, dt, axis)  # noqa: E731
    if mode == "mean":
        out = dask.delayed(_mean)(place(sums), place(counts))
    else:
        out = place(sums if mode == "sum" else counts)
    return da.from_delayed(out, shape=shape, dtype=dt)
