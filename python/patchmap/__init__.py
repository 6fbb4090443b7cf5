"""patchmap: the sliding-window patch matrix (im2col) of a numpy array as a
read-only 2-D ndarray that is never materialized.

    >>> import numpy as np, patchmap
    >>> X = patchmap.windows(np.arange(9).reshape(3, 3), (2, 2))
    >>> X
    array([[0., 1., 3., 4.],
           [1., 2., 4., 5.],
           [3., 4., 6., 7.],
           [4., 5., 7., 8.]], dtype=float32)

X's buffer is a lazily filled mapping made by libpatchmap (loaded with
ctypes: PATCHMAP_LIBRARY, next to this package, a ../build* tree of a source
checkout, or the system's libpatchmap): pages are computed from the image
when first read and dropped again under a memory budget, so the matrix may
be far larger than RAM and still go straight into scikit-learn.

Functions: windows() (the array), open() (a handle with close()),
describe() (the resolved options and shape, nothing opened), save()
(to a .npy, where numpy.save cannot), take(), stats(), info(), blockwise(),
parse_size(), imread() (an image file libvips reads, decoded lazily). help() on each names every argument.
"""

from ._core import (PatchMatrix, Stats, blocks, blockwise, describe, info, open_matrix,
                    parse_size, stats, take, windows)
from ._lib import Error, InvalidArgument, OutOfMemory, SystemCallError, library_path
from ._save import save
from ._image import ImageError, image_info, imread
from ._doctor import Doctor, Memory, doctor, memory_available
from ._subsets import extract_patches_2d, fold, reconstruct_from_patches_2d, select

# patchmap.open(...): a handle with close() and a with-block. Not in __all__,
# so that `from patchmap import *` leaves the built-in open alone.
open = open_matrix


def library_version():
    """The loaded libpatchmap's version string."""
    from ._lib import lib
    return lib().pm_version().decode()


__version__ = "1.0.0"
__all__ = ["windows", "describe", "open_matrix", "save", "PatchMatrix", "Stats", "stats", "info", "take",
           "blockwise", "blocks", "parse_size", "Error", "InvalidArgument", "OutOfMemory",
           "SystemCallError", "library_path", "library_version", "imread", "image_info",
           "ImageError", "doctor", "Doctor",
           "memory_available", "Memory"]
