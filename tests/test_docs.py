"""Every citation of the documentation resolves inside the repository.

Code, params, tests and docs cite the method as "docs/method.md §8" (also "docs/method.md
§3.1", "docs/method.md §8, §9"). Each cited file must exist under docs/ and have a heading with
that number; inside a docs page a bare section sign refers to that page. A citation of the old
specification file, which lived outside the repository, is an error: users do not have it.
"""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXTENSIONS = (".py", ".yaml", ".yml", ".md")
SKIP_DIRS = {".git", ".dvc", ".venv", ".venv-vllm", "__pycache__", "models", "checkpoints",
             "dvclive", ".pytest_cache", ".hypothesis"}

NUMBER = r"\d+(?:\.\d+)*"
SECTION = rf"§\s*{NUMBER}(?:\s*[–-]\s*{NUMBER})?"
CITATION = re.compile(rf"(?:docs/(?P<file>[\w.-]+\.md)\s*)?(?P<chain>{SECTION}"
                      rf"(?:\s*(?:,|/|and)\s*{SECTION})*)")
DOC_MENTION = re.compile(r"docs/([\w.-]+\.md)")
HEADING = re.compile(rf'^#{{1,6}}\s+(?:<a id="(?P<anchor>[^"]*)"></a>\s*)?(?P<number>{NUMBER})\.?\s')
OLD_REFERENCE = re.compile(r"\b" + "SP" + "EC" + r"\b")  # spelled apart so this file passes
MARKDOWN_LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")


def repository_files() -> list[Path]:
    """Tracked and untracked-but-not-ignored .py/.yaml/.md files (a plain walk without git)."""
    try:
        listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                                cwd=ROOT, capture_output=True, text=True, check=True).stdout
        paths = [ROOT / line for line in listed.splitlines()]
    except (OSError, subprocess.CalledProcessError):
        paths = []
        for folder, dirs, files in os.walk(ROOT):
            dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
            paths += [Path(folder) / f for f in files]
    return sorted(p for p in paths if p.suffix in EXTENSIONS and p.is_file())


def headings(doc: Path) -> dict[str, str | None]:
    """Section number -> its anchor id (None without one), for every numbered heading."""
    found = {}
    for line in doc.read_text(encoding="utf-8").splitlines():
        m = HEADING.match(line)
        if m:
            found[m.group("number")] = m.group("anchor")
    return found


def section_numbers(chain: str) -> list[str]:
    return re.findall(NUMBER, chain)


def citations(path: Path) -> list[tuple[int, str | None, list[str]]]:
    """(line, cited docs file or None for a bare §, section numbers) in one file."""
    text = path.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 1, m.group("file"), section_numbers(m.group("chain")))
            for m in CITATION.finditer(text)]


FILES = repository_files()


def test_the_scan_sees_the_code_and_the_docs():
    names = {p.relative_to(ROOT).as_posix() for p in FILES}
    assert {"README.md", "params.yaml", "docs/method.md", "src/intention/aggregation.py"} <= names


def test_no_citation_of_the_old_external_reference():
    left = [f"{p.relative_to(ROOT)}:{i}: {line.strip()}"
            for p in FILES
            for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
            if OLD_REFERENCE.search(line)]
    assert not left, "cite docs/method.md §N instead:\n" + "\n".join(left)


def test_every_cited_docs_file_exists():
    missing = [f"{p.relative_to(ROOT)}: docs/{name}"
               for p in FILES for name in DOC_MENTION.findall(p.read_text(encoding="utf-8"))
               if not (ROOT / "docs" / name).is_file()]
    assert not missing, "\n".join(missing)


def test_every_section_citation_names_a_heading():
    docs_dir = ROOT / "docs"
    known: dict[Path, dict[str, str | None]] = {}
    bad, count = [], 0
    for path in FILES:
        in_docs = path.parent == docs_dir
        for lineno, name, numbers in citations(path):
            where = f"{path.relative_to(ROOT)}:{lineno}"
            if name is None and not in_docs:
                bad.append(f"{where}: bare § {numbers}: say which docs/<file>.md it is in")
                continue
            doc = docs_dir / name if name else path
            if not doc.is_file():
                bad.append(f"{where}: docs/{name} does not exist")
                continue
            sections = known.setdefault(doc, headings(doc))
            for n in numbers:
                count += 1
                if n not in sections:
                    bad.append(f"{where}: {doc.relative_to(ROOT)} has no heading numbered {n}")
    assert not bad, "\n".join(bad)
    assert count > 0  # the code does cite the method


def test_method_keeps_its_numbered_sections_with_anchors():
    sections = headings(ROOT / "docs" / "method.md")
    assert [str(n) for n in range(1, 15)] == [n for n in sections if "." not in n]
    assert {"3.1", "3.2", "3.3", "3.4"} <= set(sections)
    assert all(anchor == f"s{n}" for n, anchor in sections.items()), sections


@pytest.mark.parametrize("page", ["README.md", *sorted(
    p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md"))])
def test_relative_links_resolve(page):
    path = ROOT / page
    broken = [target for target in MARKDOWN_LINK.findall(path.read_text(encoding="utf-8"))
              if "://" not in target and not (path.parent / target).exists()]
    assert not broken, f"{page}: {broken}"


def test_readme_stays_short():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; move detail to docs/"
