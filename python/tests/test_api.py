"""The package's surface: what `from patchmap import *` brings, help() on
every public function (the real signature, every argument explained), and
errors that name the function the user called."""

import builtins
import inspect
import pydoc

import numpy as np
import pytest

import patchmap

PUBLIC = [patchmap.windows, patchmap.describe, patchmap.open, patchmap.open_matrix,
          patchmap.save, patchmap.take, patchmap.stats, patchmap.info, patchmap.blockwise,
          patchmap.blocks,
          patchmap.parse_size, patchmap.library_path, patchmap.library_version,
          patchmap.PatchMatrix, patchmap.PatchMatrix.read, patchmap.PatchMatrix.take,
          patchmap.PatchMatrix.close, patchmap.PatchMatrix.stats]


def test_star_import_keeps_builtin_open():
    ns = {}
    exec("from patchmap import *", ns)
    assert "open" not in ns
    assert set(ns) - {"__builtins__"} == set(patchmap.__all__)
    exec("f = open", ns)
    assert ns["f"] is builtins.open
    assert patchmap.open is patchmap.open_matrix  # still there by its qualified name


@pytest.mark.parametrize("fn", PUBLIC, ids=lambda f: f.__qualname__)
def test_help_shows_signature_and_every_argument(fn):
    target = fn.__init__ if inspect.isclass(fn) else fn
    sig = inspect.signature(target)
    assert not any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values()), sig
    text = pydoc.render_doc(fn, renderer=pydoc.plaintext)
    assert "README" not in text
    doc = inspect.getdoc(target) or ""
    assert doc, fn
    for name in sig.parameters:
        if name != "self":
            assert name + ":" in doc or name + "," in doc or "`%s`" % name in doc, \
                (fn.__qualname__, name)


@pytest.mark.parametrize("fn,name", [(patchmap.windows, "windows"),
                                     (patchmap.open, "open_matrix"),
                                     (patchmap.PatchMatrix, "__init__")])
def test_misspelled_keyword_names_the_function_called(fn, name):
    with pytest.raises(TypeError, match=r"%s\(\) got an unexpected keyword argument 'stpe'"
                       % name):
        fn(np.zeros((4, 4)), 2, stpe=1)


def test_list_source():
    """Anything numpy.asarray takes (here a list of floats: float64)."""
    X = patchmap.windows([[0., 1, 2], [3, 4, 5], [6, 7, 8]], (2, 2), dtype="same")
    assert X.dtype == np.float64
    assert X.tolist() == [[0, 1, 3, 4], [1, 2, 4, 5], [3, 4, 6, 7], [4, 5, 7, 8]]
