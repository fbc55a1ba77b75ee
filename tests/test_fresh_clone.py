"""The suite needs nothing beside the clone: no test names a path outside the repository.

`.ci/run` also runs `make test` in a clone with nothing beside it; this check finds the cause
(a test reading ``../shared`` or an absolute path) without that clone.
"""

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent
# A test may not name the shared data folder beside a clone, nor an absolute /work path.
OUTSIDE = re.compile(r"""\.\./shared|/shared/|["']shared["']\s*/|/\s*["']shared["']|["']/work/|parents\[[3-9]\]""")
# The script that cut the excerpts reads the shared data by design (it is not a test).
NOT_TESTS = {TESTS / "fixtures" / "make_excerpts.py"}


def test_no_test_reads_a_path_outside_the_repository():
    offending = [
        f"{path.relative_to(TESTS)}:{number}: {line.strip()}"
        for path in sorted(TESTS.rglob("*.py"))
        if path not in NOT_TESTS
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if OUTSIDE.search(line) and path != Path(__file__).resolve()
    ]
    assert offending == []


def test_the_excerpts_are_committed_with_their_maker():
    for name in (
        "handwritten_excerpt.mat",
        "handwritten_6views_excerpt.mat",
        "wn9img/train",
        "wn9img/valid",
        "wn9img/test",
        "README.md",
    ):
        assert (TESTS / "fixtures" / name).is_file(), name
