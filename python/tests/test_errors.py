"""Bad input: a clear Python exception, never a crash or wrong data. The
library's codes keep its own words (pm_strerror): ValueError for PM_E*,
MemoryError for -ENOMEM, OSError for other system errors."""

import errno
import os
import resource
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import patchmap
from patchmap import _lib as L

PYTHONPATH = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def lib_text(code):
    return L.lib().pm_strerror(code).decode()


@pytest.mark.parametrize("dtype", ["complex64", "complex128", "object", "datetime64[s]", "U3",
                                   [("a", "u1"), ("b", "f4")]])
def test_unsupported_dtypes(dtype):
    img = np.zeros((6, 6), dtype=dtype)
    with pytest.raises(TypeError, match="dtype"):
        patchmap.windows(img, 2)


@pytest.mark.parametrize("dtype", [">f4", ">i2", ">u4", ">f8"])
def test_byte_swapped_refused(dtype):
    img = np.arange(36).reshape(6, 6).astype(dtype)
    with pytest.raises(TypeError, match="byte-swapped"):
        patchmap.windows(img, 2)
    # The fix the message gives works.
    fixed = img.astype(img.dtype.newbyteorder("="))
    assert np.array_equal(patchmap.windows(fixed, 6), img.reshape(1, 36))


def test_masked_refused():
    with pytest.raises(TypeError, match="masked"):
        patchmap.windows(np.ma.masked_array(np.zeros((4, 4), np.float32)), 2)


def test_output_dtype_unsupported():
    with pytest.raises(patchmap.InvalidArgument,
                       match=r"^patchmap.windows\(dtype=<class 'numpy.int64'>\): dtype: "):
        patchmap.windows(np.zeros((4, 4), np.float32), 2, dtype=np.int64)
    with pytest.raises(TypeError, match="dtype"):
        patchmap.windows(np.zeros((4, 4), np.float32), 2, dtype=object())


@pytest.mark.parametrize("kwargs,match", [
    (dict(image=np.float32(1.0), window_shape=()), "at least one dimension"),
    (dict(image=np.zeros((1,) * 9, np.uint8), window_shape=1), "at most 8"),
    (dict(window_shape=2.0), "integer"),
    (dict(window_shape=True), "bool"),
    (dict(window_shape=[[2], [2]]), "flat sequence"),
    (dict(padding=((1, 2, 3),)), "pad_width"),
    (dict(pad_mode=3), "name"),
    (dict(affine=(1, 2, 3)), "pair"),
    (dict(affine=(1, 2), scale=2), "not both"),
    (dict(writable="maybe", backend=None), None),
    (dict(budget=1.5e9), r"budget must be a whole number of bytes or a size such as '1\.5G'"),
    (dict(chunk=[4096]), "chunk must be a whole number of bytes"),
    (dict(rows=[]), "selects no window"),
])
def test_argument_type_errors(kwargs, match):
    """Python's own argument shapes: TypeError (or ValueError for a
    pad_width numpy would refuse), before the library is asked."""
    args = dict(image=np.zeros((8, 8), np.uint8), window_shape=(2, 2))
    args.update(kwargs)
    if match is None:  # a text the grammar refuses: the library's line
        with pytest.raises(patchmap.InvalidArgument, match="writable: 'maybe'"):
            patchmap.windows(**args)
        return
    with pytest.raises((TypeError, ValueError), match=match):
        patchmap.windows(**args)


# (arguments, the Python name in the message, the grammar key, the library
# code): the library's line, after the Python argument by its own name.
LIBRARY_ERRORS = [
    (dict(window_shape=(2, 2, 2)), "window_shape", "window", L.PM_ESPEC),
    (dict(window_shape=(2, -1)), "window_shape", "window", L.PM_ESPEC),
    (dict(window_shape=(0, 2)), "window_shape", "window", L.PM_ESPEC),
    (dict(step=-1), "step", "step", L.PM_ESPEC),
    (dict(step=(1, 0)), "step", "step", L.PM_ESPEC),
    (dict(dilation=0), "dilation", "dilation", L.PM_ESPEC),
    (dict(padding=-1), "padding", "pad", L.PM_ESPEC),
    (dict(padding="full"), "padding", "pad", L.PM_ESPEC),
    (dict(padding=2**33), "padding", "pad", L.PM_ESPEC),
    (dict(pad_mode="mirror"), "pad_mode", "pad_mode", L.PM_ESPEC),
    (dict(pad_mode="constant", pad_value=300), "pad_value", "pad_value", L.PM_EPADVALUE),
    (dict(pad_mode="constant", pad_value=0.5), "pad_value", "pad_value", L.PM_EPADVALUE),
    (dict(window_shape=(9, 2)), "window_shape", "window", L.PM_EWINDOWBIG),
    (dict(window_shape=(3, 2), dilation=(4, 1)), "window_shape", "window", L.PM_EWINDOWBIG),
    (dict(dtype=np.int16), "dtype", "dtype", L.PM_EOUTDTYPE),
    (dict(dtype="u8"), "dtype", "dtype", L.PM_ESPEC),
    (dict(dtype="same", affine=(2, 1)), "scale", "scale", L.PM_EAFFINE),
    (dict(order="rows"), "order", "order", L.PM_ESPEC),
    (dict(layout="diagonal"), "layout", "layout", L.PM_ESPEC),
    (dict(row_pitch=6), "row_pitch", "row_pitch", L.PM_EPITCH),
    (dict(backend="bogus"), "backend", "backend", L.PM_ESPEC),
    (dict(budget="lots"), "budget", "budget", L.PM_ESPEC),
    (dict(budget=0), "budget", "budget", L.PM_ESPEC),
    (dict(chunk=3000), "chunk", "chunk", L.PM_ESPEC),
    (dict(threads=-2), "threads", "threads", L.PM_ESPEC),
    (dict(channel_axis=2), "channel_axis", "channel_axis", L.PM_ECHANNEL),
    (dict(image=np.zeros(5, np.uint8), channel_axis=0), "channel_axis", "channel_axis",
     L.PM_ECHANNEL),
    (dict(image=np.broadcast_to(np.zeros(1, np.float32), (2**22, 2**22)),
          window_shape=(16, 16)), "window_shape", "window", L.PM_ETOOBIG),
]


@pytest.mark.parametrize("kwargs,name,key,code", LIBRARY_ERRORS)
def test_library_errors(kwargs, name, key, code):
    args = dict(image=np.zeros((8, 8), np.uint8), window_shape=(2, 2))
    args.update(kwargs)
    with pytest.raises(ValueError) as e:
        patchmap.windows(**args)
    assert isinstance(e.value, patchmap.InvalidArgument)
    msg = str(e.value)
    assert msg.startswith("patchmap.windows(%s=" % name), msg
    assert ": %s: " % key in msg, msg
    if code != L.PM_ESPEC:  # refused when resolved against the source
        assert e.value.code in (-code, -L.PM_ESPEC), (e.value.code, msg)
    else:
        assert e.value.code == -code, (e.value.code, msg)


def test_messages_name_the_function_called():
    img = np.zeros((8, 8), np.uint8)
    with pytest.raises(patchmap.InvalidArgument, match=r"^patchmap.open\(pad_mode='x'\): "):
        patchmap.open(img, 2, pad_mode="x")
    with pytest.raises(patchmap.InvalidArgument, match=r"^patchmap.describe\(step=0\): "):
        patchmap.describe(img, 2, step=0)


@pytest.mark.parametrize("padding,ok", [((1, 2), False), ((2, 2), True), (((1, 2),), True),
                                        (((1, 2), (1, 2)), True), (((1, 1), (2, 2)), True)])
def test_torch_style_padding(padding, ok):
    """padding=(1, 2) on a 2-D window: numpy.pad's (before, after) for every
    axis, or PyTorch's (y, x)? Refused, saying both, when they differ."""
    img = np.arange(64, dtype=np.uint8).reshape(8, 8)
    if ok:
        pads = np.broadcast_to(np.asarray(padding), (2, 2))
        X = patchmap.windows(img, 3, padding=padding, dtype="same")
        want = np.lib.stride_tricks.sliding_window_view(np.pad(img, pads), (3, 3))
        assert np.array_equal(X, want.reshape(-1, 9))
        return
    with pytest.raises(ValueError) as e:
        patchmap.windows(img, 3, padding=padding)
    msg = str(e.value)
    assert "numpy.pad" in msg and "PyTorch" in msg
    assert "((1, 2), (1, 2))" in msg and "((1, 1), (2, 2))" in msg
    # on a 1-D or 3-D window there is no ambiguity: numpy's reading
    assert patchmap.windows(np.arange(8.0), 3, padding=(1, 2)).shape == (8 + 3 - 3 + 1, 3)


def test_system_error_is_oserror():
    """No descriptor left for the userfaultfd, eventfd or pipes: EMFILE."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    img = np.zeros((64, 64), np.uint8)
    nfd = len(os.listdir("/proc/self/fd"))
    resource.setrlimit(resource.RLIMIT_NOFILE, (nfd, hard))
    try:
        with pytest.raises(OSError) as e:
            patchmap.windows(img, 4, backend="uffd")
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert isinstance(e.value, patchmap.SystemCallError)
    assert e.value.errno == errno.EMFILE and e.value.code == -errno.EMFILE
    assert lib_text(-errno.EMFILE) in str(e.value)
    # And everything works again.
    assert patchmap.windows(img, 4, backend="uffd").shape == (61 * 61, 16)


def test_enomem_is_memoryerror():
    """Address space capped below the reservation: -ENOMEM -> MemoryError.
    In a child process, so that the cap cannot hurt this one."""
    code = textwrap.dedent("""
        import resource, numpy as np, patchmap
        img = np.zeros((4096, 4096), np.uint8)
        vm = int([l for l in open("/proc/self/status") if l.startswith("VmSize")][0].split()[1])
        cap = vm * 1024 + (1 << 30)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        for backend in ["uffd", "sigsegv"]:
            try:
                patchmap.windows(img, (16, 16), backend=backend)  # 16 GiB
            except MemoryError as e:
                assert isinstance(e, patchmap.OutOfMemory) and e.code == -12, e
                print(backend, "MemoryError:", e)
            else:
                raise SystemExit("no MemoryError")
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=PYTHONPATH,
                                PATCHMAP_LIBRARY=os.path.abspath(patchmap.library_path())),
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("MemoryError: ") == 2 and lib_text(-errno.ENOMEM) in r.stdout


def test_library_not_found_is_oserror():
    code = "import patchmap, numpy as np; patchmap.windows(np.zeros((4, 4), np.uint8), 2)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=PYTHONPATH,
                                PATCHMAP_LIBRARY="/nonexistent/libpatchmap.so"), timeout=60)
    assert r.returncode != 0
    assert "OSError: patchmap: cannot load libpatchmap" in r.stderr
    assert "PATCHMAP_LIBRARY" in r.stderr


def test_handle_not_picklable():
    import copy
    import pickle
    with patchmap.open(np.zeros((8, 8), np.uint8), 2) as P:
        for f in (pickle.dumps, copy.deepcopy):
            with pytest.raises(TypeError, match="PatchMatrix cannot be pickled or copied"):
                f(P)
