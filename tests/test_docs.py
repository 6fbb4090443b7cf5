"""Every fenced code block of every README.md of the repository, run as
written against the build tree:

- ```c: compiled as a complete program with the flags of pkg-config's
  uninstalled `patchmap` (and `openblas` when the block includes cblas.h),
  then run; it must exit 0.
- ```sh: run by bash (-e -o pipefail) in a new temporary directory that
  looks like the top of a checkout (`build` is the build tree, the source
  folders are links to the sources; HOME is that directory too), with the
  build's `tools` on PATH before /usr/bin; it must exit 0.
- ```python: blocks with `>>>` prompts run as doctests, every output
  compared exactly; other blocks run as a script (Debian's python3, the
  package and the library of the build tree); it must exit 0.
- A block preceded by `<!-- docs: output -->` is the output of the last
  code block above it: its stdout and stderr (merged) must equal it, line
  by line, trailing blanks aside.
- A block preceded by `<!-- docs: skip (reason) -->` is not run; the
  reason is reported and the skips are counted (test_inventory).
- Other blocks, ```text, ```ini or without a language, are text
  (synopses, diagrams, message formats, a file's content), not commands;
  any other language fails.

PATCHMAP_SOURCE_ROOT and PATCHMAP_BUILD_ROOT name the trees (meson sets
them); by hand: PATCHMAP_BUILD_ROOT=build /usr/bin/python3 -m pytest
tests/test_docs.py.

With PATCHMAP_DOCS_INSTALLED=1 the blocks run against the installed
packages instead (tools/run package does this in a fresh Debian root): no
build tree, PATH /usr/bin:/bin, no PYTHONPATH or library variables, C
blocks built with the system's pkg-config and no run path, the preload shim
taken from the library's directory; a block that needs a checkout's build
(meson, ninja, build/, tools/, examples/, ...) is skipped and counted as
such, and test_installed checks that the tool, the Python package and the
library come from the system.
"""

import doctest
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.abspath(os.environ.get("PATCHMAP_SOURCE_ROOT", os.path.dirname(HERE)))
BUILD = os.path.abspath(os.environ.get("PATCHMAP_BUILD_ROOT", os.path.join(SOURCE, "build")))
PYTHON = "/usr/bin/python3"
RUN = {"c", "sh", "python"}
TEXT = {"", "text", "ini"}  # text, or the content of a file (ini)
MARK = re.compile(r"<!--\s*docs:\s*(skip|output)\b\s*(?:\((.*?)\))?\s*-->")
TIMEOUT = 300
INSTALLED = os.environ.get("PATCHMAP_DOCS_INSTALLED") == "1"
# In installed mode: the build tree's shim, as the READMEs name it, is the
# installed one; anything else of a checkout (outside comments) makes a
# block a checkout's.
BUILD_SHIM = "$PWD/build/preload/libpatchmap-preload.so"
CHECKOUT = re.compile(r"\b(?:meson|ninja)\b|(?<![\w$/.-])(?:build|tools|examples|tests|bench|"
                      r"python|preload|image|lib|include)/|PYTHONPATH=")


def readmes():
    """Every README.md under the source tree, build trees and VCS aside."""
    found = []
    for top, dirs, files in os.walk(SOURCE):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "build", "subprojects"))
                         and d != "__pycache__")
        if "README.md" in files:
            found.append(os.path.relpath(os.path.join(top, "README.md"), SOURCE))
    return sorted(found)


class Block:
    def __init__(self, path, line, lang, text, mark, reason):
        self.path, self.line, self.lang, self.text = path, line, lang, text
        self.mark, self.reason = mark, reason
        self.output = None  # the Block holding this one's output

    @property
    def id(self):
        return "%s:%d:%s" % (self.path, self.line, self.lang or "text")


def blocks_of(path):
    """The fenced blocks of one file, with their markers, outputs attached
    to the code block they follow."""
    lines = open(os.path.join(SOURCE, path), encoding="utf-8").read().split("\n")
    out, i, last_code, pending = [], 0, None, (None, None)
    while i < len(lines):
        line = lines[i]
        m = MARK.search(line)
        if m:
            pending = (m.group(1), m.group(2))
        fence = re.match(r"^(\s*)(```+|~~~+)\s*([\w+-]*)\s*$", line)
        if not fence:
            i += 1
            continue
        indent, ticks, lang = fence.groups()
        body, j = [], i + 1
        while j < len(lines) and not re.match(r"^\s*" + re.escape(ticks) + r"\s*$", lines[j]):
            body.append(lines[j][len(indent):] if lines[j].startswith(indent) else lines[j])
            j += 1
        b = Block(path, i + 1, lang.lower(), "\n".join(body) + "\n", *pending)
        if b.mark == "output":
            if last_code is None:
                raise AssertionError("%s: output block with no code block above it" % b.id)
            last_code.output = b
        elif b.lang in RUN and b.mark != "skip":
            last_code = b
        out.append(b)
        pending = (None, None)
        i = j + 1
    return out


ALL = [b for p in readmes() for b in blocks_of(p)]
CODE = [b for b in ALL if b.lang in RUN or b.mark == "skip"]


def env(home=None):
    e = dict(os.environ)
    if home:
        e["HOME"] = home  # nothing a block writes under ~ lands outside its directory
    if INSTALLED:
        for k in ("PYTHONPATH", "PATCHMAP_LIBRARY", "PATCHMAP_IMAGE_LIBRARY", "PKG_CONFIG_PATH",
                  "LD_LIBRARY_PATH", "LD_PRELOAD", "PATCHMAP_BACKEND"):
            e.pop(k, None)
        e["PATH"] = "/usr/bin:/bin"
        e["PYTHONDONTWRITEBYTECODE"] = "1"
        return e
    e["PATH"] = os.pathsep.join([os.path.join(BUILD, "tools"), "/usr/bin", e.get("PATH", "")])
    e["PYTHONPATH"] = os.path.join(SOURCE, "python")
    e["PATCHMAP_LIBRARY"] = os.path.join(BUILD, "libpatchmap.so")
    e["PKG_CONFIG_PATH"] = os.path.join(BUILD, "meson-uninstalled")
    e["PYTHONDONTWRITEBYTECODE"] = "1"
    e.pop("PATCHMAP_BACKEND", None)
    return e


def execute(block, argv, cwd, home=None):
    """Runs argv in its own session: on a timeout the whole process group is
    killed, so no child of a block outlives the test. stdout and stderr
    merged. TMPDIR is the block's directory: what a block makes with
    mktemp goes when the directory goes."""
    e = env(home)
    e["TMPDIR"] = cwd
    p = subprocess.Popen(argv, cwd=cwd, env=e, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = p.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        raise AssertionError("%s: still running after %d s (killed)" % (block.id, TIMEOUT))
    finally:
        try:  # anything the block left running in the background
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert p.returncode == 0, "%s exited %d:\n%s" % (block.id, p.returncode, out)
    return out


def installed_shim():
    libdir = subprocess.run(["pkg-config", "--variable=libdir", "patchmap"], env=env(),
                            capture_output=True, text=True, check=True).stdout.strip()
    return os.path.join(libdir, "patchmap", "libpatchmap-preload.so")


def text_of(block):
    """The block as it runs: in installed mode, with the installed shim."""
    if INSTALLED and BUILD_SHIM in block.text:
        return block.text.replace(BUILD_SHIM, installed_shim())
    return block.text


def checkout_like(tmp):
    """A directory that looks like the top of a checkout after a build:
    `build` is the build tree, every source entry a link to the source.
    (Installed mode: an empty directory.)"""
    if INSTALLED:
        return
    for name in os.listdir(SOURCE):
        if name.startswith(("build", ".git")):
            continue
        os.symlink(os.path.join(SOURCE, name), os.path.join(tmp, name))
    os.symlink(BUILD, os.path.join(tmp, "build"))


def compare_output(block, got):
    if block.output is None:
        return
    want = [l.rstrip() for l in block.output.text.rstrip("\n").split("\n")]
    have = [l.rstrip() for l in got.rstrip("\n").split("\n")]
    assert have == want, "%s: the output differs from %s\n--- got:\n%s" % (
        block.id, block.output.id, got)


def run(block, tmp):
    if block.lang == "sh":
        checkout_like(tmp)
        script = os.path.join(tmp, ".block.sh")
        with open(script, "w") as f:
            f.write(text_of(block))
        return execute(block, ["bash", "-e", "-o", "pipefail", script], tmp, home=tmp)
    if block.lang == "c":
        src = os.path.join(tmp, "block.c")
        with open(src, "w") as f:
            f.write(text_of(block))
        pkgs = ["patchmap"] + (["openblas"] if "cblas.h" in block.text else [])
        flags = subprocess.run(["pkg-config", "--cflags", "--libs"] + pkgs, env=env(),
                               capture_output=True, text=True, check=True).stdout.split()
        exe = os.path.join(tmp, "block")
        rpath = [] if INSTALLED else ["-Wl,-rpath," + BUILD]
        c = subprocess.run(["cc", "-std=c11", "-Wall", "-Wextra", "-Werror", src, "-o", exe]
                           + flags + rpath, env=env(), capture_output=True, text=True)
        assert c.returncode == 0, "%s does not compile:\n%s" % (block.id, c.stderr)
        return execute(block, [exe], tmp)
    # python
    if re.search(r"^>>> ", block.text, flags=re.M):
        script = DOCTEST % (block.text, block.id)
    else:
        script = block.text
    path = os.path.join(tmp, "block.py")
    with open(path, "w") as f:
        f.write(script)
    return execute(block, [PYTHON, path], tmp)


# Runs a doctest block in a fresh interpreter: every example's output
# compared exactly (doctest's default), failures printed, exit 1.
DOCTEST = '''
import doctest, sys
text = %r
test = doctest.DocTestParser().get_doctest(text, {"__name__": "__main__"}, %r, None, 0)
runner = doctest.DocTestRunner(optionflags=0)
runner.run(test)
failed, tried = runner.summarize(verbose=False)
sys.exit(1 if failed or not tried else 0)
'''


@pytest.mark.parametrize("block", CODE, ids=lambda b: b.id)
def test_block(block):
    if block.mark == "skip":
        assert block.reason, "%s: a skip marker needs a reason: <!-- docs: skip (why) -->" \
            % block.id
        pytest.skip("%s: %s" % (block.id, block.reason))
    if INSTALLED and CHECKOUT.search(re.sub(r"(^|\s)#.*", "", text_of(block))):
        pytest.skip("%s: needs a checkout's build tree (installed packages only)" % block.id)
    tmp = tempfile.mkdtemp(prefix="patchmap-docs-")
    try:
        compare_output(block, run(block, tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.skipif(not INSTALLED, reason="installed mode only")
def test_installed():
    """In installed mode the blocks see the system's tool, Python package
    and libraries, nothing of a checkout."""
    assert shutil.which("patchmap", path=env()["PATH"]) == "/usr/bin/patchmap"
    p = subprocess.run([PYTHON, "-c", "import patchmap; print(patchmap.__file__); "
                        "print(patchmap.library_path())"], env=env(), cwd="/",
                       capture_output=True, text=True, check=True)
    module, lib = p.stdout.split()
    assert module.startswith("/usr/lib/python3/dist-packages/patchmap/"), module
    assert re.match(r"/usr/lib/[\w-]+/libpatchmap\.so\.1$", lib) or \
        lib == "libpatchmap.so.1", lib
    assert os.path.exists(installed_shim())


def test_inventory(capsys):
    """Every block is code that runs, an output that is compared, text, or
    skipped with a reason; the counts and the skips are printed."""
    assert readmes() and "README.md" in readmes() and os.path.join("python", "README.md") in \
        readmes()
    bad = [b.id for b in ALL if b.lang not in RUN | TEXT]
    assert not bad, "blocks in a language this test cannot run: %s" % bad
    skips = [b for b in ALL if b.mark == "skip"]
    outputs = [b for b in ALL if b.mark == "output"]
    run_ = [b for b in CODE if b.mark != "skip"]
    text = [b for b in ALL if b.lang in TEXT and b.mark is None]
    with capsys.disabled():
        sys.stdout.write("\n%d READMEs, %d blocks: %d run, %d outputs compared, %d text, "
                         "%d skipped\n" % (len(readmes()), len(ALL), len(run_), len(outputs),
                                           len(text), len(skips)))
        for b in skips:
            sys.stdout.write("  skipped %s: %s\n" % (b.id, b.reason))
    assert all(b.reason for b in skips)
    assert len(run_) >= 8
