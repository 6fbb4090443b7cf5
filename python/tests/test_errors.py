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


@pytest.mark.parametrize("dtype", ["int64", "uint64", "float16", "bool", "complex64",
                                   "complex128", "object", "datetime64[s]", "U3",
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
    with pytest.raises(TypeError, match="output dtype"):
        patchmap.windows(np.zeros((4, 4), np.float32), 2, dtype=np.int64)


@pytest.mark.parametrize("kwargs,match", [
    (dict(image=np.float32(1.0), window_shape=()), "at least one dimension"),
    (dict(image=np.zeros((1,) * 9, np.uint8), window_shape=1), "at most 8"),
    (dict(window_shape=(2, 2, 2)), "one value per windowed axis"),
    (dict(window_shape=(2, -1)), "between"),
    (dict(step=-1), "between"),
    (dict(window_shape=2.0), "integer"),
    (dict(window_shape=True), "bool"),
    (dict(padding=-1), "between"),
    (dict(padding=((1, 2, 3),)), "pad_width"),
    (dict(padding="full"), "padding"),
    (dict(pad_mode="mirror"), "pad_mode"),
    (dict(pad_mode="edge", pad_value=3), "constant"),
    (dict(order="rows"), "order"),
    (dict(layout="diagonal"), "layout"),
    (dict(budget="lots"), "size"),
    (dict(budget=0), "positive"),
    (dict(threads=-2), "between"),
    (dict(channel_axis=2), "between"),
    (dict(image=np.zeros(5, np.uint8), channel_axis=0), "2 or more"),
])
def test_argument_errors(kwargs, match):
    args = dict(image=np.zeros((8, 8), np.uint8), window_shape=(2, 2))
    args.update(kwargs)
    with pytest.raises(ValueError if not any(w in match for w in ("integer", "bool", "None"))
                       else TypeError, match=match):
        patchmap.windows(**args)


@pytest.mark.parametrize("kwargs,code", [
    (dict(image=np.zeros((0, 8), np.uint8)), L.PM_ESHAPE),
    (dict(window_shape=(0, 2)), L.PM_EWINDOW),
    (dict(step=(1, 0)), L.PM_ESTEP),
    (dict(dilation=0), L.PM_EDILATION),
    (dict(padding=2**33), L.PM_EPAD),
    (dict(pad_mode="constant", pad_value=300), L.PM_EPADVALUE),
    (dict(pad_mode="constant", pad_value=0.5), L.PM_EPADVALUE),
    (dict(window_shape=(9, 2)), L.PM_EWINDOWBIG),
    (dict(window_shape=(3, 2), dilation=(4, 1)), L.PM_EWINDOWBIG),
    (dict(dtype=np.int16), L.PM_EOUTDTYPE),
    (dict(dtype="same", affine=(2, 1)), L.PM_EAFFINE),
    (dict(row_pitch=6), L.PM_EPITCH),
    (dict(backend="bogus"), L.PM_EBACKEND),
    (dict(chunk=3000), L.PM_ECHUNK),
    (dict(image=np.broadcast_to(np.zeros(1, np.float32), (2**22, 2**22)),
          window_shape=(16, 16)), L.PM_ETOOBIG),
])
def test_library_errors(kwargs, code):
    args = dict(image=np.zeros((8, 8), np.uint8), window_shape=(2, 2))
    args.update(kwargs)
    with pytest.raises(ValueError) as e:
        patchmap.windows(**args)
    assert isinstance(e.value, patchmap.InvalidArgument)
    assert e.value.code == -code
    assert lib_text(-code) in str(e.value)


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
