"""readme-doctest.py [--without NAME]... FILE...: runs the interactive (>>>)
Python blocks of Markdown files as doctests, in the interpreter that runs
this script and with whatever `patchmap` it imports (test-wheel.sh: a wheel
installed in a fresh virtualenv). Blocks that use a NAME given with
--without (a part the wheel does not carry, such as patchmap.imread) are
left out and counted. Prints one line per file; exit status 1 on any
failure or when no example was found."""

import doctest
import re
import sys

FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```", re.S | re.M)


def main(args):
    without, paths = [], []
    while args:
        a = args.pop(0)
        if a == "--without":
            without.append(args.pop(0))
        else:
            paths.append(a)
    total = failed = 0
    for path in paths:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        blocks = [b for b in FENCE.findall(text) if b.lstrip().startswith(">>>")]
        left = [b for b in blocks if any(w in b for w in without)]
        blocks = [b for b in blocks if b not in left]
        if left:
            print("%s: %d blocks left out (they use %s)" % (path, len(left), ", ".join(without)))
        globs = {}
        parser = doctest.DocTestParser()
        runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
        for i, block in enumerate(blocks):
            test = parser.get_doctest(block, globs, "%s[%d]" % (path, i), path, 0)
            runner.run(test)
        r = runner.summarize(verbose=False)
        print("%s: %d examples in %d blocks, %d failed" % (path, r.attempted, len(blocks), r.failed))
        total += r.attempted
        failed += r.failed
    return 1 if failed or not total else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
