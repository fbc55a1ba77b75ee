"""What a user of an open-source library looks for: licence, citation, changelog, version, entry points."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

import iidfusion
from iidfusion.cli.main import main

REPO = Path(__file__).resolve().parents[1]


def test_version_is_written_once_and_reported_everywhere(capsys):
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "version" in pyproject["project"]["dynamic"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "iidfusion.__version__"}
    try:
        main(["--version"])
    except SystemExit as exit_:
        assert exit_.code == 0
    assert capsys.readouterr().out.strip() == f"iidfusion {iidfusion.__version__}"
    citation = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert citation["version"] == iidfusion.__version__
    assert f"## {iidfusion.__version__}" in (REPO / "CHANGELOG.md").read_text()


def test_python_dash_m_runs_the_command():
    done = subprocess.run(
        [sys.executable, "-m", "iidfusion", "--version"],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(REPO / "src"), "PATH": ""},
    )
    assert done.stdout.strip() == f"iidfusion {iidfusion.__version__}"


def test_licence_and_citation_say_what_is_known():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert pyproject["license"] == "MIT" and pyproject["license-files"] == ["LICENSE"]
    assert (REPO / "LICENSE").read_text().startswith("MIT License")
    citation = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0" and citation["license"] == "MIT" and citation["type"] == "software"
    (paper,) = citation["references"]
    assert (
        paper["title"]
        == "Supporting Multimodal Intermediate Fusion with Informatic Constraint and Distribution Coherence"
    )
    assert "ICLR 2026" in paper["conference"]["name"] and paper["year"] == 2026
    # The authors of the ICLR 2026 poster page, in its order.
    assert [(a["given-names"], a["family-names"]) for a in paper["authors"]] == [
        ("Yi", "Li"),
        ("Fei", "Song"),
        ("Changwen", "Zheng"),
        ("Jiangmeng", "Li"),
    ]
    assert paper["url"] == "https://openreview.net/forum?id=5bxmmuRhO6"


def test_docstrings_cite_only_what_the_repository_holds():
    """Docs and code cite docs/*.md and the paper, never notes outside the repository or issue numbers."""
    pattern = re.compile(r"DESIGN\.md|\bissue #?\d|\(#\d+\)")
    offending = [
        f"{path.relative_to(REPO)}:{number}"
        for folder in ("src", "docs", "tests", "benchmarks", "studies")
        for path in sorted((REPO / folder).rglob("*"))
        if path.suffix in {".py", ".md", ".yaml"} and path.resolve() != Path(__file__).resolve()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line)
    ]
    assert offending == []


def _sections(doc: Path) -> list[str]:
    """A page's headings (without their markers and numbers) and the bold titles that open its paragraphs."""
    text = doc.read_text(encoding="utf-8")
    marked = [line.lstrip("#").strip() for line in text.splitlines() if line.startswith("#")]
    headings = [re.sub(r"^\d+\.\s*", "", heading) for heading in marked]
    titles = re.findall(r"^\*\*([^*]+?)\.?\*\*", text, flags=re.MULTILINE)
    return [name.replace('"', "") for name in headings + titles]


def test_every_cited_section_of_the_docs_exists():
    """``docs/PAGE.md, "Section"`` in code, tests, benchmarks and the docs names a heading or a paragraph title
    of that page (its beginning: "Informatic constraint" for "Informatic constraint L_ic (...)").
    """
    citation = re.compile(r'docs/([a-z_]+)\.md,\s*(?:#\s*)?"([^"\n]+?)"')
    sections = {doc.stem: _sections(doc) for doc in (REPO / "docs").glob("*.md")}
    cited = [
        (f"{path.relative_to(REPO)}", page, section.replace('"', ""))
        for folder in ("src", "docs", "tests", "benchmarks", "studies")
        for path in sorted((REPO / folder).rglob("*"))
        if path.suffix in {".py", ".md"}
        for page, section in citation.findall(path.read_text(encoding="utf-8"))
    ]
    cited += [("README.md", page, section) for page, section in citation.findall((REPO / "README.md").read_text())]
    assert len(cited) > 50
    missing = [
        f"{where}: docs/{page}.md, {section!r}"
        for where, page, section in cited
        if not any(name.startswith(section) for name in sections.get(page, []))
    ]
    assert missing == []
