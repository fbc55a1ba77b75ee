"""Every number the docs quote from a committed results file is in that file.

The rule, for README.md, docs/*.md and benchmarks/README.md:

* A paragraph, list item or table row that names a file of ``benchmarks/results/`` (a path,
  ``benchmarks/results/train_cost.md``, ``results/suite/*.md``, or a name that exists there,
  ``wasserstein.md``; a bare ``.json`` beside it adds that file of the same stem) quotes that
  file. A block that names none quotes what the last block of its section that named one named,
  else what its headings name; a table row, what was named above the table. Naming the file in
  the block itself checks it against that file alone.
* Each number such a block quotes must be in one of those files at the precision the doc shows:
  "12.3" matches 12.34, "0.023" matches 0.0228, "98 %" matches 98.0 or 0.98. A number written
  with a sign needs the same sign in the file ("+" also matches an unsigned value); one written
  without, either. Checked: every decimal (``0.023``, ``+1.19``, ``98.10``) and every integer
  with a unit (``12 ms``, ``8-9 %``, ``34 min``, ``1,804 MiB``, ``2 pp``; in a range A-B the unit
  after B is A's too). Not read: inline code, file names, commit hashes, version numbers and
  scientific notation (settings such as ``1e-3``).
* A number in such a block that is not quoted from those files (a setting, a target, the paper's
  figure, a value derived from quoted ones, a timing nobody committed) carries its reason in a
  marker inside the block, or on the line directly above a table for the whole table:
  ``<!-- not from results: 3.7: chance, 1 / 27 -->``, the numbers as written, then the reason.
  A marker for a number the block no longer shows is an error too, so markers cannot go stale.
* Numbers derived from a results file (means over its runs) are recomputed by a test of their
  own below.
* A results file's own prose is its own result; where it names another results file, the
  parenthesis around that name (else its sentence) is checked against that file.

The check is of values, not of claims: "the smallest p is 0.09" passes when 0.09 is in the file,
whichever p is the smallest; and a small number can find its match among a large file's
numbers by chance. ``python tests/test_docs_numbers.py`` lists every finding with its file and
line; ``--uncited`` lists the blocks with checked numbers that quote no results file.
"""

from __future__ import annotations

import json
import math
import re
import statistics
import sys
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
QUOTABLE = (".md", ".json", ".csv")

PATH_PART = r"(?:[\w-][\w.-]*|\*)"
CITATION = re.compile(rf"(?<![\w/.*-])((?:{PATH_PART}/)*{PATH_PART}\.(?:md|json|csv|png|\*))(?!\w)")
BARE_SUFFIX = re.compile(r"(?<![\w*])(\.(?:md|json|csv))(?!\w)")
MARKER = re.compile(r"<!--\s*not from results:(.*?)-->", re.DOTALL)
HTML_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
INLINE_CODE = re.compile(r"`[^`]*`")
NOT_READ = [
    HTML_COMMENT,
    INLINE_CODE,
    re.compile(r"\]\([^)]*\)"),  # link targets
    re.compile(r"[\w./*-]+\.(?:md|json|csv|png|py|ya?ml|pth|npz|npy|mat|txt|tsv|jsonl|ckpt|\*)\b"),  # file names
    re.compile(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*\d)[0-9a-f]{7,40}\b"),  # commit hashes
    re.compile(r"\b\d+(?:\.\d+){2,}\b"),  # versions
    re.compile(r"\b\d+(?:\.\d+)?e[+-]?\d+\b", re.IGNORECASE),  # scientific notation
]
UNITS = r"%|ms|s|min|h|MiB|GiB|KiB|MB|GB|pp"
NUMBER = re.compile(
    r"(?<![\w.])(?P<sign>[+\-−]?)±?(?P<first>\d[\d,]*(?:\.\d+)?)"
    r"(?:\s?[-–]\s?(?P<second>\d[\d,]*(?:\.\d+)?))?"
    rf"(?![\d.]?\d)(?![A-Za-wyz_])(?P<unit>\s?(?:{UNITS})(?!\w))?"
)
FILE_NUMBER = re.compile(r"(?<![\w.])[+\-−]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def documents() -> list[Path]:
    docs = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "benchmarks" / "README.md"]
    return docs + sorted(RESULTS.rglob("*.md"))


@dataclass
class Block:
    """A paragraph, list item or table row, with the results files it quotes and its markers."""

    line: int
    text: str
    citations: set[Path]
    markers: list[tuple[list[str], str]] = field(default_factory=list)
    table: Block | None = None  # for a row: its table, which holds the markers above it


@dataclass(frozen=True)
class Quoted:
    text: str
    value: float  # signed when the doc writes a sign, else the magnitude
    signed: bool
    decimals: int
    percent: bool


def resolve_citation(token: str) -> set[Path]:
    """The results files a token names: a path from the repository root, from benchmarks/, or a bare name."""
    if "/" in token:
        found = {path for base in (REPO, REPO / "benchmarks", RESULTS) for path in base.glob(token)}
    else:
        found = set(RESULTS.rglob(token))
    return {path for path in found if path.is_file() and path.suffix in QUOTABLE and RESULTS in path.parents}


def citations_in(text: str) -> set[Path]:
    text = HTML_COMMENT.sub(" ", text)
    cited: set[Path] = set()
    stems: set[Path] = set()
    for token in CITATION.findall(text):
        cited |= resolve_citation(token)
        stems |= {path.with_suffix("") for path in resolve_citation(token.rsplit(".", 1)[0] + ".*")}
    for suffix in BARE_SUFFIX.findall(text):
        cited |= {stem.with_suffix(suffix) for stem in stems if stem.with_suffix(suffix).is_file()}
    return cited


def markers_in(text: str) -> list[tuple[list[str], str]]:
    markers = []
    for body in MARKER.findall(INLINE_CODE.sub(" ", text)):  # a marker shown as code is an example
        numbers, _, reason = body.strip().partition(":")
        markers.append((numbers.split(), reason.strip()))
    return markers


def split_blocks(doc: Path) -> list[Block]:
    """Paragraphs, list items and table rows of a markdown file; code (fenced or indented) is skipped."""
    lines = doc.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    headings: list[tuple[int, set[Path]]] = []
    paragraph: list[str] = []
    start = 0
    in_fence = False
    table: Block | None = None
    carried: set[Path] = set()  # what the section's last citing block named
    comment_above = ""

    def scope() -> set[Path]:
        return set().union(*(cited for _, cited in headings))

    def flush() -> None:
        nonlocal paragraph, carried
        if paragraph:
            text = "\n".join(paragraph)
            carried = citations_in(text) or carried
            blocks.append(Block(start + 1, text, carried, markers_in(text)))
        paragraph = []

    for number, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("```"):
            flush()
            in_fence = not in_fence
        elif in_fence:
            continue
        elif not stripped:
            flush()
            table = None
        elif line.startswith("    ") and not paragraph:
            continue  # indented code
        elif heading := re.match(r"(#+)\s", line):
            flush()
            level = len(heading.group(1))
            headings = [(lvl, cited) for lvl, cited in headings if lvl < level] + [(level, citations_in(line))]
            carried = scope()
        elif stripped.startswith("|"):
            flush()
            if table is None:
                table = Block(number + 1, "", carried, markers_in(comment_above))
                comment_above = ""
            if not re.fullmatch(r"\|[\s:|-]*", stripped):
                blocks.append(Block(number + 1, line, citations_in(line) or table.citations, markers_in(line), table))
        elif (
            not paragraph
            and MARKER.fullmatch(stripped)
            and number + 1 < len(lines)
            and lines[number + 1].lstrip().startswith("|")
        ):
            comment_above = line  # applies to every row of the table below
        else:
            if paragraph and re.match(r"\s*(?:[*-]|\d+\.)\s", line):
                flush()  # a list item starts a block of its own
            if not paragraph:
                start = number
            paragraph.append(line)
    flush()
    if RESULTS in doc.parents:
        own = {doc.with_suffix(suffix) for suffix in QUOTABLE}
        return [quote for block in blocks if block.table is None for quote in quotes_of_other_files(block, own)]
    return blocks


def quotes_of_other_files(block: Block, own: set[Path]) -> list[Block]:
    """In a results file's own prose, the parenthesis (else the sentence) around each name of another results file:
    what the file quotes from that one. The rest of its prose is its own result."""
    text = block.text
    pairs, opened = [], []
    for position, character in enumerate(text):
        if character == "(":
            opened.append(position)
        elif character == ")" and opened:
            pairs.append((opened.pop(), position + 1))
    quotes = []
    for match in CITATION.finditer(text):
        cited = resolve_citation(match.group(1)) - own
        if not cited:
            continue
        around = [(start, end) for start, end in pairs if start < match.start() and end > match.end()]
        if around:
            start, end = max(around)  # the innermost
        else:
            start = text.rfind(". ", 0, match.start()) + 1
            end = text.find(". ", match.end())
            end = len(text) if end < 0 else end
        quotes.append(Block(block.line, text[start:end], cited, markers_in(text[start:end])))
    return quotes


def quoted_numbers(text: str) -> list[Quoted]:
    """The numbers a block states as measurements, in the order written."""
    for pattern in NOT_READ:
        text = pattern.sub(" ", text)
    quoted = []
    for match in NUMBER.finditer(text):
        unit = (match.group("unit") or "").strip()
        sign = match.group("sign").replace("−", "-")
        for written, signed in ((match.group("first"), bool(sign)), (match.group("second"), False)):
            if written and ("." in written or unit):
                plain = written.replace(",", "")
                value = float((sign if signed else "") + plain)
                quoted.append(Quoted(written, value, signed, len(plain.partition(".")[2]), unit == "%"))
    return quoted


@cache
def file_values(path: Path) -> tuple[float, ...]:
    tokens = FILE_NUMBER.findall(path.read_text(encoding="utf-8"))
    values = {float(token.replace("−", "-")) for token in tokens}
    return tuple(sorted(value for value in values if math.isfinite(value)))


def found_in(number: Quoted, files: set[Path]) -> bool:
    """Whether a file holds the number at the doc's precision (a percentage also as a fraction). A number the doc
    writes with a sign needs that sign in the file (+ also matches an unsigned value); one without, either."""
    tolerance = 0.5 * 10**-number.decimals + 1e-9
    targets = [(number.value, tolerance)] + ([(number.value / 100, tolerance / 100)] if number.percent else [])
    return any(
        abs((value if number.signed else abs(value)) - target) <= tol
        for path in files
        for value in file_values(path)
        for target, tol in targets
    )


def written_numbers(block: Block) -> set[str]:
    return {number.text for number in quoted_numbers(block.text)}


def marker_problems(where: str, markers: list[tuple[list[str], str]], shown: set[str], cites: bool) -> list[str]:
    problems = []
    for listed, reason in markers:
        if not cites:
            problems.append(f"{where}: a 'not from results' marker where no results file is quoted")
        if not listed or not reason:
            problems.append(f"{where}: a 'not from results' marker needs its numbers, then ': reason'")
        problems += [f"{where}: the marker exempts {item}, which is not shown" for item in listed if item not in shown]
    return problems


def findings() -> list[str]:
    """One line per number quoted from a results file that the file does not hold, and per bad marker."""
    problems = []
    for doc in documents():
        blocks = split_blocks(doc)
        name = doc.relative_to(REPO)
        tables: dict[int, tuple[Block, set[str]]] = {}
        for block in blocks:
            where = f"{name}:{block.line}"
            shown = written_numbers(block)
            problems += marker_problems(where, block.markers, shown, bool(block.citations))
            if block.table is not None:
                tables.setdefault(id(block.table), (block.table, set()))[1].update(shown)
            if not block.citations:
                continue
            exempt = {
                item for listed, _ in block.markers + (block.table.markers if block.table else []) for item in listed
            }
            files = ", ".join(sorted(str(path.relative_to(RESULTS)) for path in block.citations))
            problems += [
                f"{where}: {number.text}{' %' if number.percent else ''} is not in {files}"
                for number in quoted_numbers(block.text)
                if number.text not in exempt and not found_in(number, block.citations)
            ]
        for table, shown in tables.values():
            problems += marker_problems(f"{name}:{table.line - 1}", table.markers, shown, bool(table.citations))
    return problems


def uncited() -> list[str]:
    """Blocks with checked numbers that name no results file: quotes, if any, that the check cannot see."""
    return [
        f"{doc.relative_to(REPO)}:{block.line}: {' '.join(sorted(written_numbers(block)))}"
        for doc in documents()
        if RESULTS not in doc.parents
        for block in split_blocks(doc)
        if not block.citations and written_numbers(block)
    ]


def test_every_quoted_number_is_in_its_results_file():
    assert findings() == []


def test_the_checker_finds_stale_numbers_and_markers(tmp_path, monkeypatch):
    results = tmp_path / "benchmarks" / "results"
    results.mkdir(parents=True)
    (results / "cost.md").write_text(
        "| method | ms | ratio |\n|---|---:|---:|\n| a | 7.12 | 1.598 |\n| b | 7.26 | 2.280 |\n"
    )
    (results / "other.md").write_text("Its own 3.5 ms, as with the first run (`cost.md`: 7.1 ms, ratio -1.6).\n")
    doc = tmp_path / "doc.md"
    doc.write_text(
        "## Cost (`cost.md`)\n\n"
        "The regularizers cost 12-13 ms per step.\n\n"
        "They cost 7.1-7.3 ms per step, a ratio of 1.6-2.28, +1.598 in one row.\n\n"
        "| method | ms |\n|---|---:|\n| a | 99.99 |\n\n"
        "Elsewhere 42.5 ms, a setting of 0.5 <!-- not from results: 0.5: a setting -->\n\n"
        "A stale marker, 7.1 ms. <!-- not from results: 4.2: gone -->\n\n"
        "## Elsewhere\n\nA setting of 0.5 names no results file.\n\n"
        "The next run (`other.md`) took 3.5 ms.\n\nIts second paragraph, 4.5 ms, quotes the same file.\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "RESULTS", results)
    monkeypatch.setattr(sys.modules[__name__], "documents", lambda: [doc, results / "cost.md", results / "other.md"])
    assert findings() == [
        "doc.md:3: 12 is not in cost.md",
        "doc.md:3: 13 is not in cost.md",
        "doc.md:9: 99.99 is not in cost.md",
        "doc.md:11: 42.5 is not in cost.md",
        "doc.md:13: the marker exempts 4.2, which is not shown",
        "doc.md:21: 4.5 is not in other.md",
        "benchmarks/results/other.md:1: 1.6 is not in cost.md",
    ]


BASES = ("if-static", "if-qmf", "if-pdf", "lf-static", "qmf", "pdf")
IF_PROTOCOL_ROWS = {  # docs/evidence.md section 5: the row of each protocol, found by its flags
    "separate_heads_stop_on_acc": "stop on accuracy (the old default)",
    "separate_heads_stop_on_acc_or_loss": "separate heads, `--stop-on acc_or_loss`",
    "separate_heads_unimodal_mean": "`--unimodal-reduction mean`",
    "shared_heads_stop_on_acc": "`--unimodal-heads shared`, stop on accuracy",
    "shared_heads_stop_on_acc_or_loss": "shared heads, `--stop-on acc_or_loss`",
}


def test_if_protocol_means_are_those_of_the_runs():
    """docs/evidence.md section 5 gives, per protocol, the mean validation accuracy of each IF base and the mean
    epochs over the runs of its JSON file; the text below the table, the range of the bases' means."""
    evidence = (REPO / "docs" / "evidence.md").read_text(encoding="utf-8")
    means: dict[str, dict[str, float]] = {}
    for stem in IF_PROTOCOL_ROWS:
        runs = json.loads((RESULTS / "if_protocol" / f"{stem}.json").read_text(encoding="utf-8"))["runs"]
        means[stem] = {m: statistics.mean(100 * r["val_acc"] for r in runs if r["method"] == m) for m in BASES}
        means[stem]["epochs"] = statistics.mean(run["epochs"] for run in runs)
    for stem, flags in IF_PROTOCOL_ROWS.items():
        (row,) = [line for line in evidence.splitlines() if line.startswith("|") and flags in line]
        cells = [cell.strip(" *") for cell in row.strip("|").split("|")]
        assert cells[-2] == " / ".join(f"{means[stem][m]:.1f}" for m in BASES[:3]), (stem, cells[-2])
        assert cells[-1] == f"{means[stem]['epochs']:.0f}", (stem, cells[-1])

    def span(stem: str, methods: tuple[str, ...]) -> str:
        values = sorted(means[stem][m] for m in methods)
        return f"{values[0]:.1f}-{values[-1]:.1f}"

    before, after = "shared_heads_stop_on_acc", "shared_heads_stop_on_acc_or_loss"
    words = " ".join(evidence.split())  # the sentences may wrap anywhere
    assert f"({means[before]['epochs']:.0f} -> {means[after]['epochs']:.0f} on average)" in words
    assert f"IF bases {span(before, BASES[:3])} -> {span(after, BASES[:3])} %" in words
    assert f"LF bases {span(before, BASES[3:])} -> {span(after, BASES[3:])} %" in words


if __name__ == "__main__":
    report = uncited() if "--uncited" in sys.argv else findings()
    print("\n".join(report))
    counts: dict[str, int] = {}
    for line in report:
        counts[line.partition(":")[0]] = counts.get(line.partition(":")[0], 0) + 1
    print(f"\n{len(report)}: " + ", ".join(f"{name} {count}" for name, count in sorted(counts.items())))
