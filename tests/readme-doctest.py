"""readme-doctest.py FILE...: runs the interactive (>>>) Python blocks of
Markdown files as doctests, in the interpreter that runs this script and
with whatever `patchmap` it imports (test-wheel.sh: a wheel installed in a
fresh virtualenv). Prints one line per file; exit status 1 on any failure or
when no example was found."""

import doctest
import re
import sys

FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```", re.S | re.M)


def main(paths):
    total = failed = 0
    for path in paths:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        blocks = [b for b in FENCE.findall(text) if b.lstrip().startswith(">>>")]
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
