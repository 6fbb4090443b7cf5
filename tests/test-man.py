"""test-man.py MANDIR SOURCEDIR LIBPATCHMAP [PATCHMAP] [image]

The man pages built in MANDIR against what they document:

- every PM_API function of include/patchmap.h (and include/patchmap-image.h
  when "image" is given: the build has libpatchmap-image) has a page of its
  name in section 3, or a .so link to one, and that page names it in its
  NAME section and in its SYNOPSIS;
- every page renders with `man --warnings` without a warning;
- patchmap(1) names every command of `patchmap --help` and every option of
  each command's --help (when the tool is built);
- patchmap.patchmap(5) has an entry for every descriptor key: the library's
  pm_spec keys (read from LIBPATCHMAP through pm_spec_key) and the
  descriptor's own (source, format, the raw file's keys).

Exit 0 pass, 1 fail, 77 skip (no man, or no pages built: scdoc missing)."""

import ctypes
import glob
import os
import re
import shutil
import subprocess
import sys

FRONT_END_KEYS = ["source", "format", "shape", "raw_dtype", "raw_offset", "rows", "mask",
                  "sample", "seed"]


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def render(path):
    """The page as man shows it at 80 columns, and its warnings."""
    env = dict(os.environ, MANWIDTH="80", MAN_KEEP_FORMATTING="", LC_ALL="C.UTF-8")
    p = subprocess.run(["man", "--warnings", "-l", path], env=env, capture_output=True,
                       text=True, cwd=os.path.dirname(path))
    if p.returncode != 0:
        fail("%s: man exited %d: %s" % (path, p.returncode, p.stderr.strip()))
    # Undo man's hyphenation at line ends, so that names read whole.
    text = re.sub(r"[\u2010-]\n\s+", "", p.stdout)
    return text, p.stderr.strip()


def section(text, name):
    m = re.search(r"^%s\n(.*?)(?=^[A-Z][A-Z ]+\n|\Z)" % name, text, flags=re.M | re.S)
    return m.group(1) if m else ""


def api_functions(header):
    src = open(header, encoding="utf-8").read()
    src = re.sub(r"/\*.*?\*/", "", src, flags=re.S)
    return re.findall(r"\bPM_API\b[^;(]*?\b(pm_\w+)\s*\(", src)


def main(argv):
    mandir, source, lib = (os.path.abspath(a) for a in argv[1:4])
    exe = argv[4] if len(argv) > 4 and argv[4] else None
    image = "image" in argv[5:]
    if not shutil.which("man"):
        print("no man: skipped")
        return 77
    pages = sorted(glob.glob(os.path.join(mandir, "*.[1-8]")))
    if not pages:
        print("no man pages built (scdoc missing): skipped")
        return 77

    # Every page, links aside, renders without a warning.
    rendered = {}
    for p in pages:
        first = open(p, encoding="utf-8").readline()
        if first.startswith(".so "):
            continue
        text, warn = render(p)
        if warn:
            fail("%s: %s" % (os.path.basename(p), warn))
        rendered[os.path.basename(p)] = text
    print("%d pages render without warnings" % len(rendered))

    headers = [os.path.join(source, "include", "patchmap.h")]
    if image:
        headers.append(os.path.join(source, "include", "patchmap-image.h"))
    count = 0
    for h in headers:
        names = api_functions(h)
        if len(names) < 5:
            fail("%s: found only %d PM_API functions" % (h, len(names)))
        for name in names:
            path = os.path.join(mandir, name + ".3")
            if not os.path.exists(path):
                fail("%s (%s) has no man page: add it to a page of man/ and to "
                     "man/meson.build" % (name, os.path.basename(h)))
            page = name + ".3"
            first = open(path, encoding="utf-8").readline()
            if first.startswith(".so "):
                page = os.path.basename(first.split()[1])
                if page not in rendered:
                    fail("%s.3 links to %s, which was not built" % (name, page))
            text = rendered[page]
            if not re.search(r"\b%s\b" % name, section(text, "NAME")):
                fail("%s: NAME does not list %s" % (page, name))
            if not re.search(r"\b%s\(" % name, section(text, "SYNOPSIS")):
                fail("%s: SYNOPSIS does not declare %s" % (page, name))
            count += 1
    print("%d public functions have a page: %s" % (count, ", ".join(
        os.path.basename(h) for h in headers)))

    # The descriptor keys: the library's and the descriptor's own.
    pm = ctypes.CDLL(lib)
    pm.pm_spec_key.restype = ctypes.c_char_p
    pm.pm_spec_key.argtypes = [ctypes.c_int]
    keys, i = [], 0
    while pm.pm_spec_key(i):
        keys.append(pm.pm_spec_key(i).decode())
        i += 1
    if len(keys) < 10:
        fail("pm_spec_key gave only %d keys" % len(keys))
    keyed = section(rendered["patchmap.patchmap.5"], "KEYS")
    for key in keys + FRONT_END_KEYS:
        if not re.search(r"^       (\S+, )*%s(,|$)" % re.escape(key), keyed, flags=re.M):
            fail("patchmap.patchmap(5) has no entry for the key %s" % key)
    print("patchmap.patchmap(5) describes the %d descriptor keys"
          % (len(keys) + len(FRONT_END_KEYS)))

    if exe:
        man1 = rendered.get("patchmap.1")
        if man1 is None:
            fail("the tool is built but patchmap.1 is not")
        out = subprocess.run([exe, "--help"], capture_output=True, text=True, check=True).stdout
        block = out.split("commands:\n", 1)[1].split("\n\n", 1)[0]
        commands = re.findall(r"^  ([a-z][a-z-]*) ", block, flags=re.M)
        if len(commands) < 3:
            fail("patchmap --help lists only %s" % commands)
        cmds = section(man1, "COMMANDS")
        for cmd in commands:
            if not re.search(r"^       %s$" % cmd, cmds, flags=re.M):
                fail("patchmap(1) does not describe the command %s" % cmd)
            help_text = subprocess.run([exe, cmd, "--help"], capture_output=True, text=True,
                                       check=True).stdout
            for opt in sorted(set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", help_text))):
                if not re.search(r"(?<![\w-])%s(?![\w-])" % re.escape(opt),
                                 section(man1, "OPTIONS")):
                    fail("patchmap(1) does not describe %s of patchmap %s" % (opt, cmd))
        print("patchmap(1) describes the commands %s and their options" % ", ".join(commands))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
