"""Unmodified programs under LD_PRELOAD=libpatchmap-preload.so: coreutils
(sha256sum, dd, tail, wc, cat, cp, stat), Python and numpy, and a BLAS
program, read and map .patchmap descriptors; what they see is compared
with the patch matrix numpy builds itself (np.pad + sliding_window_view +
reshape + astype), never with the library's output.

Environment: PATCHMAP_PRELOAD (the shim), PATCHMAP_PRELOAD_SGEMV (the BLAS
program, optional). Tests named *big* read matrices larger than RAM."""

import hashlib
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

SHIM = os.environ.get("PATCHMAP_PRELOAD", "")
SGEMV = os.environ.get("PATCHMAP_PRELOAD_SGEMV", "")
PYTHON = "/usr/bin/python3"

pytestmark = pytest.mark.skipif(not os.path.exists(SHIM), reason="PATCHMAP_PRELOAD not set")


def shim_env(**extra):
    env = dict(os.environ, LD_PRELOAD=SHIM, PYTHONDONTWRITEBYTECODE="1", LC_ALL="C")
    env.update(extra)
    return env


def run(args, check=True, **kw):
    """A program under the shim; its CompletedProcess (bytes)."""
    p = subprocess.run(args, env=shim_env(), capture_output=True, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"{args} exited {p.returncode}: {p.stderr.decode(errors='replace')}")
    return p


# ------------------------------------------------------------ reference


def reference(a, window, step=1, dilation=1, pad=0, mode="zero", cval=0, channels=False,
              dtype=None, scale=None, offset=None, order="window", layout="rows", pitch=0):
    """The patch matrix, as numpy builds it. pad: an int (every side), or
    a list of (before, after) per spatial axis."""
    a = np.asarray(a)
    nsp = a.ndim - (1 if channels else 0)
    per = lambda v: list(v) if isinstance(v, (list, tuple)) else [v] * nsp
    window, step, dilation = per(window), per(step), per(dilation)
    pads = pad if isinstance(pad, list) else [(pad, pad)] * nsp
    widths = list(pads) + ([(0, 0)] if channels else [])
    if mode in ("zero", "constant"):
        p = np.pad(a, widths, mode="constant", constant_values=cval if mode == "constant" else 0)
    else:
        p = np.pad(a, widths, mode=mode)
    span = [(w - 1) * d + 1 for w, d in zip(window, dilation)]
    v = sliding_window_view(p, span, axis=tuple(range(nsp)))
    v = v[tuple(slice(None, None, s) for s in step)]
    v = v[(Ellipsis,) + tuple(slice(None, None, d) for d in dilation)]
    rows = int(np.prod(v.shape[:nsp]))
    if channels:
        # (positions..., C, window...): window order wants (window..., C)
        if order == "window":
            v = np.moveaxis(v, nsp, -1)
    m = v.reshape(rows, -1)
    if dtype is not None or scale is not None or offset is not None:
        t = np.dtype(dtype or a.dtype)
        m = m.astype(t)
        if scale is not None or offset is not None:
            m = m * t.type(1 if scale is None else scale) + t.type(0 if offset is None else offset)
    if layout == "cols":
        m = m.T
    m = np.ascontiguousarray(m)
    if pitch:
        ld = pitch // m.itemsize
        out = np.zeros((m.shape[0], ld), m.dtype)
        out[:, : m.shape[1]] = m
        m = out
    return m


# ------------------------------------------------------------ sources


def write_pnm(path, a):
    a = np.asarray(a)
    magic = b"P5" if a.ndim == 2 else b"P6"
    maxval = 255 if a.dtype == np.uint8 else 65535
    data = a.astype(">u2").tobytes() if maxval > 255 else a.tobytes()
    with open(path, "wb") as f:
        f.write(magic + b"\n# made by test_preload.py\n%d %d\n%d\n" % (a.shape[1], a.shape[0], maxval) + data)


@pytest.fixture(scope="session")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("preload")
    rng = np.random.default_rng(20240601)
    src = {}
    src["u8"] = rng.integers(0, 256, (61, 53), dtype=np.uint8)
    np.save(d / "u8.npy", src["u8"])
    src["gray16"] = rng.integers(0, 65536, (40, 37), dtype=np.uint16)
    write_pnm(d / "gray16.pgm", src["gray16"])
    src["rgb"] = rng.integers(0, 256, (30, 41, 3), dtype=np.uint8)
    write_pnm(d / "rgb.ppm", src["rgb"])
    src["f4F"] = np.asfortranarray(rng.standard_normal((33, 29)).astype(np.float32))
    np.save(d / "f4F.npy", src["f4F"])
    src["i2be"] = rng.integers(-30000, 30000, (20, 31)).astype(np.int16)
    with open(d / "i2be.raw", "wb") as f:
        f.write(b"header!" + src["i2be"].astype(">i2").tobytes())
    src["vol"] = rng.integers(0, 4000, (9, 10, 11)).astype(np.uint16)
    np.save(d / "vol.npy", src["vol"])
    # row selections: window numbers of u8's 5x4 windows at step 2x1 (29 x 50
    # of them; any order, repeats, the first and the last), and a mask over
    # the positions of its 5x4 windows at step 1 (57 x 50)
    src["rows"] = np.concatenate([[29 * 50 - 1, 0, 7, 7], rng.integers(0, 29 * 50, 400)])
    np.save(d / "rows.npy", src["rows"])
    src["mask"] = rng.random((57, 50)) < 0.3
    write_pnm(d / "mask.pgm", src["mask"].astype(np.uint8) * 255)
    return d, src


# id: (descriptor lines, source name, reference keywords)
CASES = {
    "u8-f32": ("source = u8.npy\nwindow = 5x4\nstep = 2x1\ndtype = float32\n", "u8",
               dict(window=[5, 4], step=[2, 1], dtype="float32")),
    "u8-dilated-reflect": ("source = u8.npy\ndtype = same\nwindow = 3\ndilation = 2\npad = same\npad_mode = reflect\n",
                           "u8", dict(window=3, dilation=2, pad=2, mode="reflect")),
    "u8-constant": ("source = u8.npy\ndtype = same\nwindow = 4x6\nstep = 3\npad = 1, 2x3\npad_mode = constant\n"
                    "pad_value = 7\n", "u8",
                    dict(window=[4, 6], step=3, pad=[(1, 1), (2, 3)], mode="constant", cval=7)),
    "u8-affine-f64": ("source = u8.npy\nwindow = 3\ndtype = float64\nscale = 0.5\noffset = -1.25\n",
                      "u8", dict(window=3, dtype="float64", scale=0.5, offset=-1.25)),
    "u8-cols-pitch": ("source = u8.npy\ndtype = same\nwindow = 3x2\nlayout = cols\nrow_pitch = 3072\n", "u8",
                      dict(window=[3, 2], layout="cols", pitch=3072)),
    "pgm16-edge": ("source = gray16.pgm\nwindow = 5\npad = 2\npad_mode = edge\ndtype = float32\n",
                   "gray16", dict(window=5, pad=2, mode="edge", dtype="float32")),
    "ppm-channel": ("source = rgb.ppm\ndtype = same\nwindow = 4\nstep = 2\norder = channel\n", "rgb",
                    dict(window=4, step=2, channels=True, order="channel")),
    "ppm-wrap": ("source = rgb.ppm\nwindow = 3x5\npad = 1x2\npad_mode = wrap\ndtype = float32\n",
                 "rgb", dict(window=[3, 5], pad=[(1, 2), (1, 2)], mode="wrap", channels=True,
                             dtype="float32")),
    "f4-fortran-symmetric": ("source = f4F.npy\ndtype = same\nwindow = 7x3\npad = 3\npad_mode = symmetric\n", "f4F",
                             dict(window=[7, 3], pad=3, mode="symmetric")),
    "raw-i2-be": ("source = i2be.raw\nshape = 20x31\nraw_dtype = >i2\nraw_offset = 7\nwindow = 4\n"
                          "dtype = float32\nscale = 2\n", "i2be",
                          dict(window=4, dtype="float32", scale=2)),
    "volume": ("source = vol.npy\ndtype = same\nwindow = 3\nchannel_axis = none\nstep = 2\n", "vol",
               dict(window=3, step=2)),
    "u8-rows": ("source = u8.npy\nwindow = 5x4\nstep = 2x1\ndtype = float32\nrows = rows.npy\n",
                "u8", dict(window=[5, 4], step=[2, 1], dtype="float32", select="rows")),
    "u8-mask-pgm": ("source = u8.npy\ndtype = same\nwindow = 5x4\nmask = mask.pgm\n", "u8",
                    dict(window=[5, 4], select="mask")),
    "ppm-row-range": ("source = rgb.ppm\ndtype = same\nwindow = 4\nrow_range = 17:301\n", "rgb",
                      dict(window=4, channels=True, select=slice(17, 301))),
}


class Case:
    def __init__(self, data, name, fmt):
        d, src = data
        text, source, kw = CASES[name]
        kw = dict(kw)
        select = kw.pop("select", None)
        self.expect = reference(src[source], **kw)
        if select is not None:  # the stored rows the descriptor selects
            self.expect = self.expect[src[select].reshape(-1) if isinstance(select, str)
                                      else select]
        self.fmt = fmt
        self.path = d / f"{name}-{fmt}.patchmap"
        if not self.path.exists():
            self.path.write_text(f"# {name}\n{text}format = {fmt}\n")
        self.data = self.expect.tobytes()
        self.header = b""
        if fmt == "npy":
            self.header = self._checked_header()
        self.image = self.header + self.data

    def _checked_header(self):
        """The .npy header the shim writes, read through it and checked
        with numpy's own parser: version, shape, dtype, C order, and data
        aligned to 64 bytes."""
        head = run(["head", "-c", "4096", str(self.path)]).stdout
        import io
        f = io.BytesIO(head)
        major, minor = np.lib.format.read_magic(f)
        assert (major, minor) in ((1, 0), (2, 0))
        read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(f)
        assert shape == self.expect.shape and not fortran and dtype == self.expect.dtype
        assert f.tell() % 64 == 0
        return head[: f.tell()]


FORMATS = ["raw", "npy"]


@pytest.fixture(params=[(n, f) for n in CASES for f in FORMATS], ids=lambda p: f"{p[0]}-{p[1]}")
def case(request, data):
    return Case(data, *request.param)


# ------------------------------------------------------------ coreutils


def test_sha256sum(case):
    out = run(["sha256sum", str(case.path)]).stdout.decode()
    assert out.split()[0] == hashlib.sha256(case.image).hexdigest()


def test_cat(case):
    assert run(["cat", str(case.path)]).stdout == case.image


def test_wc_and_stat(case):
    assert run(["wc", "-c", str(case.path)]).stdout.split()[0] == str(len(case.image)).encode()
    out = run(["stat", "-c", "%s %F %A", str(case.path)]).stdout.decode().split()
    assert out == [str(len(case.image)), "regular", "file", "-r--r--r--"]


def test_dd_odd_offsets(case):
    n = len(case.image)
    for bs, skip, count in [(1, 0, 17), (7, 13, 101), (4096, 1, 3), (999, 5, 1000), (3, n // 3 - 2, 7),
                            (1, n - 5, 10)]:
        out = run(["dd", f"if={case.path}", f"bs={bs}", f"skip={skip}", f"count={count}",
                   "status=none"]).stdout
        assert out == case.image[bs * skip: bs * (skip + count)], (bs, skip, count)
    out = run(["dd", f"if={case.path}", "bs=65536", "skip=12345", "iflag=skip_bytes",
               "status=none"]).stdout
    assert out == case.image[12345:]


def test_tail(case):
    for n in (1, 100, 4097, len(case.image) - 1):
        assert run(["tail", "-c", str(n), str(case.path)]).stdout == case.image[-n:]


def test_cp(case, tmp_path):
    out = tmp_path / "copy.bin"
    run(["cp", str(case.path), str(out)])
    assert out.read_bytes() == case.image


def test_stdin_redirect(case):
    """A shell's `< desc.patchmap`, opened without the shim: the program
    finds it open and reads the matrix, through stdio's stdin too."""
    with open(case.path, "rb") as f:
        assert run(["sha256sum"], stdin=f).stdout.split()[0].decode() == hashlib.sha256(case.image).hexdigest()
    with open(case.path, "rb") as f:
        assert run(["cat"], stdin=f).stdout == case.image


# ------------------------------------------------------------ Python, numpy

NUMPY_CHECK = r"""
import mmap, os, shutil, sys
import numpy as np
path, exp_path, fmt, out = sys.argv[1:5]
exp = np.load(exp_path)
image = open(exp_path.replace(".npy", ".image"), "rb").read()
if fmt == "npy":
    a = np.load(path, mmap_mode="r")
    assert isinstance(a, np.memmap), type(a)
    assert a.shape == exp.shape and a.dtype == exp.dtype, (a.shape, a.dtype)
    assert np.array_equal(a, exp, equal_nan=True)
    b = np.load(path)
    assert b.shape == exp.shape and np.array_equal(b, exp, equal_nan=True)
else:
    a = np.memmap(path, dtype=exp.dtype, mode="r", shape=exp.shape)
    assert np.array_equal(a, exp, equal_nan=True)
    b = np.fromfile(path, dtype=exp.dtype).reshape(exp.shape)
    assert np.array_equal(b, exp, equal_nan=True)
    with open(path, "rb") as f:
        f.seek(exp.itemsize * 3)
        c = np.fromfile(f, dtype=exp.dtype, count=5)
        assert np.array_equal(c, exp.reshape(-1)[3:8], equal_nan=True)
# the same bytes through every other door
with open(path, "rb") as f:
    assert f.read() == image
    assert os.fstat(f.fileno()).st_size == len(image)
    with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        assert m[:] == image and m[len(image) // 2:] == image[len(image) // 2:]
    if len(image) >= 2 * mmap.PAGESIZE:
        with mmap.mmap(f.fileno(), mmap.PAGESIZE, access=mmap.ACCESS_READ, offset=mmap.PAGESIZE) as m:
            assert m[:] == image[mmap.PAGESIZE:2 * mmap.PAGESIZE]
fd = os.open(path, os.O_RDONLY)
assert os.pread(fd, 1000, 123) == image[123:1123]
bufs = [bytearray(10), bytearray(300)]
assert os.preadv(fd, bufs, 7) == 310 and bytes(bufs[0] + bufs[1]) == image[7:317]
assert os.lseek(fd, -10, os.SEEK_END) == len(image) - 10 and os.read(fd, 100) == image[-10:]
os.close(fd)
assert os.stat(path).st_size == len(image)
shutil.copyfile(path, out)   # sendfile, refused, then read and write
print("ok")
"""


def test_numpy_and_python(case, tmp_path):
    exp_path = tmp_path / "exp.npy"
    np.save(exp_path, case.expect)
    (tmp_path / "exp.image").write_bytes(case.image)
    out = tmp_path / "copy.bin"
    p = run([PYTHON, "-c", NUMPY_CHECK, str(case.path), str(exp_path), case.fmt, str(out)])
    assert p.stdout.strip() == b"ok"
    assert out.read_bytes() == case.image


# ------------------------------------------------------------ malformed


ERRORS = [
    # (descriptor text, line, message after "NAME:LINE: ")
    ("source = u8.npy\nwindow = 3\nwindw = 3\n", 3, 'unknown key "windw"'),
    ("source = u8.npy\nwindow = three\n", 2, "window: 'three' is not a window size: one positive size "
     "for every spatial axis, or one for all, such as 3, 3x3 or 3,3"),
    ("source = u8.npy\nwindow = 3\nwindow = 4\n", 3, "window given twice (first on line 2)"),
    ("source = u8.npy\nwindow 3\n", 2, 'expected "key = value", got "window 3"'),
    ("window = 3\n", 0, 'no "source = PATH" line'),
    ("source = u8.npy\n", 0, 'no "window = SIZE" line'),
    ("window = 3\nsource = nowhere.npy\n", 2, 'source "nowhere.npy": cannot open: No such file or directory'),
    ("source = .\nwindow = 3\n", 1, 'source ".": is a directory'),
    ("source = notes.txt\nwindow = 3\n", 1, 'source "notes.txt": not a .npy, PGM or PPM file '
     '(for raw samples give shape and raw_dtype)'),
    ("source = i2be.raw\nshape = 20x30\nraw_dtype = >i2\nraw_offset = 7\nwindow = 3\n", 2,
     'source "i2be.raw": the raw file has 40 bytes more than the shape and dtype describe (1200)'),
    ("source = u8.npy\nwindow = 62\n", 2, "window: '62' spans 62x62 samples, more than the source's "
     "61x53 (shape 61x53): give a smaller window, or pad"),
    ("source = u8.npy\nwindow = 3\npad_mode = mirror\n", 3,
     "pad_mode: 'mirror' is not zero, constant, edge, reflect, symmetric or wrap (numpy.pad's modes)"),
    ("source = rgb.ppm\nwindow = 3\nchannel_axis = 5\n", 3,
     "channel_axis: '5': the 3-D source (shape 30x41x3) has axes 0 to 2 (or -3 to -1)"),
    ("source = u8.npy\nwindow = 3\ndtype = same\nscale = 2\n", 4, "scale: scale and offset need a float32 or float64 output, "
     "and dtype is uint8"),
    ("source = u8.npy\nwindow = 3\nchunk = 3000\n", 3, "chunk: '3000' is not a power of two from the "
     "page size (4096 bytes) to 64 TiB, such as 1M or 4M"),
    ("source = u8.npy\nwindow = 3\nformat = hdf5\n", 3, 'format: expected raw or npy, got "hdf5"'),
    ("source = u8.npy\nwindow = 3\nbudget = 1\n", 3, "budget: 1 bytes is too small: it must hold at "
     "least two chunks of 4 MiB (8 MiB); raise budget or lower chunk"),
    ("source = u8.npy\nwindow = 3x3x3\n", 2, "window: '3x3x3' gives 3 sizes for the 2-D source (shape "
     "61x53): give 2 (no channel axis) or 1 (channels last), or set channel_axis"),
]


@pytest.mark.parametrize("text,line,msg", ERRORS, ids=[f"error{i}" for i in range(len(ERRORS))])
def test_malformed(data, text, line, msg):
    d, _ = data
    (d / "notes.txt").write_text("not an image\n")
    path = d / f"bad-{hashlib.md5(text.encode()).hexdigest()[:10]}.patchmap"
    path.write_text(text)
    where = f"{path}:{line}: " if line else f"{path}: "
    # cat: EINVAL, one line from the shim naming file, line and problem
    p = run(["cat", str(path)], check=False)
    assert p.returncode == 1 and p.stdout == b""
    lines = p.stderr.decode().splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("libpatchmap-preload: " + where), lines[0]
    assert lines[0] == "libpatchmap-preload: " + where + msg
    assert lines[1] == f"cat: {path}: Invalid argument"
    # Python: OSError with errno EINVAL, and the same single line
    p = run([PYTHON, "-c", "import sys\ntry:\n open(sys.argv[1], 'rb')\nexcept OSError as e:\n"
             " print(e.errno)\n", str(path)])
    assert p.stdout.strip() == str(__import__("errno").EINVAL).encode()
    assert p.stderr.decode().splitlines() == [lines[0]]


def test_stat_then_open_reports_once(data):
    """ls stats, cp stats then opens: each program says what is wrong
    once."""
    d, _ = data
    path = d / "twice.patchmap"
    path.write_text("source = u8.npy\nwindow = 3\nbogus = 1\n")
    p = run(["cp", str(path), str(d / "out.bin")], check=False)
    lines = p.stderr.decode().splitlines()
    assert p.returncode == 1
    assert lines[0] == f'libpatchmap-preload: {path}:3: unknown key "bogus"'
    assert sum(line.startswith("libpatchmap-preload:") for line in lines) == 1


NESTED = [
    # (descriptor text, stdin: the descriptor itself or a good one, line, message)
    ("source = u8.npy\nwindow = 3\nrows = self.patchmap\n", None, 3,
     "rows: 'self.patchmap' names a descriptor, not a .npy of integer window numbers"),
    ("source = u8.npy\nwindow = 3\nmask = self.patchmap\n", None, 3,
     "mask: 'self.patchmap' names a descriptor, not a bool .npy or a PGM"),
    ("source = /dev/stdin\nwindow = 2\n", "self", 1,
     'source "/dev/stdin" names a descriptor, and a descriptor cannot be the source of another'),
    ("source = /dev/fd/0\nwindow = 2\n", "self", 1,
     'source "/dev/fd/0" names a descriptor, and a descriptor cannot be the source of another'),
    ("source = /proc/self/fd/0\nwindow = 2\n", "good", 1,
     'source "/proc/self/fd/0" names a descriptor, and a descriptor cannot be the source of another'),
    ("source = u8.npy\nwindow = 3\nrows = /dev/stdin\n", "good", 3,
     "rows: '/dev/stdin' names a descriptor, not a .npy of integer window numbers"),
]


@pytest.mark.parametrize("text,stdin,line,msg", NESTED, ids=[f"nested{i}" for i in range(len(NESTED))])
def test_nested_descriptor(data, text, stdin, line, msg):
    """A descriptor whose source, rows or mask leads to a descriptor (itself,
    or the one on stdin) is refused like any mistake: EINVAL and its line,
    never a load within a load (which recursed until the stack ran out)."""
    d, _ = data
    path = d / "self.patchmap"
    path.write_text(text)
    good = d / "good.patchmap"
    good.write_text("source = u8.npy\nwindow = 3\n")
    with open({None: os.devnull, "self": path, "good": good}[stdin], "rb") as f:
        p = run(["wc", "-c", str(path)], check=False, stdin=f, timeout=60)
    lines = p.stderr.decode().splitlines()
    assert p.returncode == 1 and p.stdout == b"", lines
    assert lines[-1] == f"wc: {path}: Invalid argument"
    # one line, though with itself on stdin it is refused twice: when the
    # program starts (stdin) and when it opens it, by the same name
    assert lines[:-1] == [f"libpatchmap-preload: {path}:{line}: {msg}"]


# ------------------------------------------------------------ BLAS


@pytest.mark.skipif(not SGEMV, reason="no OpenBLAS: preload-sgemv not built")
def test_sgemv_small(tmp_path):
    p = run([SGEMV, str(tmp_path), "200", "150", "7", "256M", "1"])
    assert b"wrong 0" in p.stdout


# ------------------------------------------------------------ larger than RAM


def mem_total():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """A 4096 x 4096 uint8 image whose float32 22 x 22 patch matrix (32 GB)
    is larger than the machine's memory."""
    d = tmp_path_factory.mktemp("big")
    img = np.random.default_rng(7).integers(0, 256, (4096, 4096), dtype=np.uint8)
    np.save(d / "big.npy", img)
    path = d / "big.patchmap"
    path.write_text("source = big.npy\nwindow = 22\ndtype = float32\nbudget = 64M\n")
    rows, cols = (4096 - 21) ** 2, 22 * 22
    size = rows * cols * 4
    if mem_total() and size <= mem_total():
        pytest.skip("the matrix would fit in this machine's memory")
    return path, img, rows, cols, size


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def test_big_cat_into_wc(big):
    """cat reads all 32 GB through read() into wc -c; its peak RSS stays
    below the budget (reading never maps the matrix: only the image is
    resident). `cat desc -` goes on to wait on its stdin once it has read
    and closed the descriptor, so that its own VmHWM (not the forking
    parent's, as wait4's ru_maxrss would count) can be read then."""
    path, img, rows, cols, size = big
    r, w = os.pipe()
    cat = subprocess.Popen(["cat", str(path), "-"], stdin=subprocess.PIPE, stdout=w, env=shim_env())
    os.close(w)
    wc = subprocess.Popen(["wc", "-c"], stdin=r, stdout=subprocess.PIPE)
    os.close(r)

    def reading():
        for name in os.listdir(f"/proc/{cat.pid}/fd"):
            try:
                if os.readlink(f"/proc/{cat.pid}/fd/{name}") == str(path):
                    return True
            except OSError:
                pass
        return False

    while cat.poll() is None and not reading():
        time.sleep(0.01)
    while cat.poll() is None and reading():
        time.sleep(0.2)
    hwm = status_kib(cat.pid, "VmHWM") * 1024
    cat.stdin.close()
    out = wc.communicate()[0]
    assert cat.wait() == 0 and wc.returncode == 0
    assert int(out) == size
    budget, margin = 64 << 20, 64 << 20
    print(f"cat: {size / 1e9:.1f} GB, peak RSS {hwm / 2**20:.0f} MiB")
    assert 0 < hwm < budget + margin


def test_big_dd_far_rows(big):
    """Rows near the end of the 32 GB file, read with dd, against numpy."""
    path, img, rows, cols, size = big
    row_bytes = cols * 4
    for r0 in (0, rows // 2 + 12345, rows - 3):
        out = run(["dd", f"if={path}", f"bs={row_bytes}", f"skip={r0}", "count=3", "status=none"]).stdout
        got = np.frombuffer(out, np.float32).reshape(-1, cols)
        ow = 4096 - 21
        want = np.stack([img[i // ow: i // ow + 22, i % ow: i % ow + 22].reshape(-1).astype(np.float32)
                         for i in range(r0, min(r0 + 3, rows))])
        assert np.array_equal(got, want)


def test_read_at_file_system_limit(tmp_path):
    """A 17 TiB virtual file on a file system whose largest offset is below
    that: read() stops short at the limit, then fails with EOVERFLOW, and
    pread() reaches past it."""
    probe = tmp_path / "probe"
    probe.write_bytes(b"")
    fd = os.open(probe, os.O_RDONLY)
    try:
        lo, hi = 0, 1 << 62
        while hi - lo > 1:
            mid = (lo + hi) // 2
            try:
                os.lseek(fd, mid, os.SEEK_SET)
                lo = mid
            except OSError:
                hi = mid
    finally:
        os.close(fd)
    limit = lo
    size = 65504 * 65504 * 33 * 33 * 4  # 65536 - 33 + 1 positions per axis
    if limit >= size:
        pytest.skip(f"this file system reaches offset {limit}: no limit below the file")
    src = tmp_path / "zeros.raw"
    with open(src, "wb") as f:
        f.truncate(65536 * 65536)
    (tmp_path / "huge.patchmap").write_text(
        "source = zeros.raw\nshape = 65536x65536\nwindow = 33\ndtype = float32\n")
    script = f"""
import errno, os
fd = os.open({str(tmp_path / "huge.patchmap")!r}, os.O_RDONLY)
assert os.fstat(fd).st_size == {size}
os.lseek(fd, {limit} - 100, os.SEEK_SET)
print(len(os.read(fd, 151)), os.lseek(fd, 0, os.SEEK_CUR) == {limit})
try:
    os.read(fd, 10)
except OSError as e:
    print(errno.errorcode[e.errno])
print(len(os.pread(fd, 4096, {limit} + 12345)))
"""
    out = run([PYTHON, "-c", script]).stdout.decode().split()
    assert out == ["100", "True", "EOVERFLOW", "4096"]


@pytest.mark.skipif(not SGEMV, reason="no OpenBLAS: preload-sgemv not built")
def test_big_sgemv_mmap(tmp_path):
    """cblas_sgemv straight on a 38 GB mapping of a descriptor, under a
    256 MiB budget: every 997th response checked, peak RSS within the
    budget plus the image, the result vector and a margin."""
    if mem_total() and (4096 - 23) ** 2 * 576 * 4 <= mem_total():
        pytest.skip("the matrix would fit in this machine's memory")
    p = run([SGEMV, str(tmp_path), "4096", "4096", "24", "256M", "997"], timeout=900)
    out = p.stdout.decode()
    assert "wrong 0" in out
    rss = int(out.split("peak_rss_kib")[1]) * 1024
    rows = (4096 - 23) ** 2
    budget, image, y, margin = 256 << 20, 4096 * 4096, rows * 4, 64 << 20
    print(f"sgemv: peak RSS {rss / 2**20:.0f} MiB")
    assert rss < budget + image + y + margin


def test_read_of_a_damaged_image_is_eio(tmp_path):
    """read(2) of a descriptor whose source is an image with a tile that
    fails to decode: EIO from the read, and the rows before it as they
    are; it killed the reader with SIGBUS. (A mapping of it raises SIGBUS
    as a mapped file with an I/O error does.)"""
    tifffile = pytest.importorskip("tifffile")
    import shutil as sh
    if not sh.which("vips"):
        pytest.skip("vips (libvips-tools) is not installed")
    img = np.random.default_rng(11).integers(0, 256, size=(256, 192), dtype=np.uint8)
    (tmp_path / "img.raw").write_bytes(img.tobytes())
    subprocess.run(["vips", "rawload", tmp_path / "img.raw", tmp_path / "img.v", "192", "256",
                    "1"], check=True, capture_output=True)
    good = tmp_path / "img.tif"
    subprocess.run(["vips", "tiffsave", tmp_path / "img.v", good, "--tile", "--tile-width",
                    "64", "--tile-height", "64", "--compression", "deflate"], check=True,
                   capture_output=True)
    with tifffile.TiffFile(good) as t:
        offsets, counts = t.pages[0].dataoffsets, t.pages[0].databytecounts
    k = 3 * 3  # the first tile of the fourth row of tiles: image rows 192-255
    data = bytearray(good.read_bytes())
    data[offsets[k]:offsets[k] + counts[k]] = b"\x5a" * counts[k]
    (tmp_path / "bad.tif").write_bytes(bytes(data))
    desc = tmp_path / "bad.patchmap"
    desc.write_text("source = bad.tif\nwindow = 4\nimage_chunk = 8K\n")
    code = ("import os, sys\n"
            "fd, got = os.open(sys.argv[1], os.O_RDONLY), bytearray()\n"
            "try:\n"
            "    while True:\n"
            "        b = os.read(fd, 1 << 16)\n"
            "        if not b:\n"
            "            break\n"
            "        got += b\n"
            "    print('no error')\n"
            "except OSError as e:\n"
            "    print(e.errno)\n"
            "open(sys.argv[2], 'wb').write(got)\n")
    p = subprocess.run([PYTHON, "-c", code, desc, tmp_path / "got.bin"], env=shim_env(),
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout == "5\n", (p.returncode, p.stdout, p.stderr)
    got = (tmp_path / "got.bin").read_bytes()
    want = reference(img, 4, dtype=np.float32).tobytes()
    assert 0 < len(got) < len(want) and got == want[:len(got)]
