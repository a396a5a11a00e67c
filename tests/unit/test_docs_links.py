"""Documentation hygiene: every relative Markdown link resolves, and no file points off the clone.

Pure and offline. Markdown files are the ones git tracks plus any present under the repository
root (``.venv``, ``.git``, ``node_modules``, ``bench/out`` and tool caches excluded). A relative
link (``[text](path)``, ``[text](path#anchor)``, ``![alt](path)``, ``[id]: path``) must name a
file or folder inside the clone; an anchor into a Markdown file must match one of its headings,
slugged the way GitHub does. Tracked text files (py, md, yaml, toml, txt, json) must not mention
the shared reference folder outside the repository, nor an absolute path into the directory the
clone sits in: such references work on one machine only. The checker tests itself first on a
temporary tree, so a checker that can no longer fail is caught too.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path
from urllib.parse import unquote

REPO_ROOT = Path(__file__).resolve().parents[2]

_EXCLUDED_DIRS = frozenset(
    (".venv", ".git", "node_modules", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".hypothesis", "build", "dist")
)
_EXCLUDED_PATHS = (Path("bench", "out"),)
_TEXT_SUFFIXES = frozenset((".py", ".md", ".yaml", ".yml", ".toml", ".txt", ".json"))
# Built from parts so that this file does not contain the string it forbids.
_SHARED_REFERENCE = "/".join(("", "work", "shared"))

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
_INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")
_REFERENCE_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
_ATX_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?[ \t]*$")
_SETEXT_UNDERLINE = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_HTML_ANCHOR = re.compile(r"<a\s[^>]*?(?:name|id)\s*=\s*[\"']([^\"']+)[\"']", re.IGNORECASE)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


# -- discovery -------------------------------------------------------------------------------------


def _excluded(rel: Path) -> bool:
    if any(part in _EXCLUDED_DIRS or part.endswith(".egg-info") for part in rel.parts[:-1]):
        return True
    return any(rel.parts[: len(p.parts)] == p.parts for p in _EXCLUDED_PATHS)


def _git_tracked(root: Path) -> list[Path] | None:
    """Paths git tracks (relative), or None when this is not a git checkout."""
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return [Path(p) for p in out.decode().split("\0") if p]


def _walk(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        dirnames[:] = [d for d in dirnames if not _excluded(rel_dir / d / "_")]
        for name in filenames:
            rel = rel_dir / name
            if not _excluded(rel):
                yield rel


def markdown_files(root: Path) -> list[Path]:
    tracked = _git_tracked(root) or []
    found = {p for p in tracked if p.suffix == ".md" and not _excluded(p)}
    found.update(p for p in _walk(root) if p.suffix == ".md")
    return sorted(p for p in found if (root / p).is_file())


def text_files(root: Path) -> list[Path]:
    tracked = _git_tracked(root)
    candidates: Iterable[Path] = tracked if tracked is not None else _walk(root)
    return sorted(p for p in candidates if p.suffix in _TEXT_SUFFIXES and (root / p).is_file())


# -- Markdown ----------------------------------------------------------------------------------------


def _prose_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) outside fenced code blocks, with inline code spans blanked."""
    fence: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        opened = _FENCE.match(line)
        if fence is None and opened:
            fence = opened.group(1)[0] * len(opened.group(1))
            continue
        if fence is not None:
            if line.strip().startswith(fence) and set(line.strip()) <= {fence[0]}:
                fence = None
            continue
        yield number, _CODE_SPAN.sub("", line)


def links(text: str) -> Iterator[tuple[int, str]]:
    """(line number, target) of every inline link, image and reference definition."""
    for number, line in _prose_lines(text):
        for match in _INLINE_LINK.finditer(line):
            yield number, match.group(1).strip("<>")
        definition = _REFERENCE_DEF.match(line)
        if definition:
            yield number, definition.group(1).strip("<>")


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: markup dropped, lower-cased, punctuation removed."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links and images keep their text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every anchor a Markdown document defines: heading slugs (deduplicated as GitHub does)."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    previous = ""

    def add(heading: str) -> None:
        slug = github_slug(heading)
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")

    for _, line in _prose_lines(text):
        atx = _ATX_HEADING.match(line)
        if atx:
            add(re.sub(r"[ \t]+#+$", "", atx.group(2) or ""))
        elif previous.strip() and _SETEXT_UNDERLINE.match(line) and not previous.lstrip().startswith(("-", "*", "|")):
            add(previous)
        found.update(_HTML_ANCHOR.findall(line))
        previous = line
    return found


def broken_links(root: Path, files: Iterable[Path]) -> list[str]:
    """One line per relative link in ``files`` whose file, folder or anchor does not exist."""
    problems: list[str] = []
    anchor_cache: dict[Path, set[str]] = {}
    resolved_root = root.resolve()

    def anchors_of(path: Path) -> set[str]:
        if path not in anchor_cache:
            anchor_cache[path] = anchors(path.read_text(encoding="utf-8"))
        return anchor_cache[path]

    for rel in files:
        source = root / rel
        for number, target in links(source.read_text(encoding="utf-8")):
            if not target or _SCHEME.match(target) or target.startswith("//"):
                continue  # external: http(s), mailto, ...
            path_part, _, anchor = target.partition("#")
            path_part = unquote(path_part.split("?", 1)[0])
            where = f"{rel}:{number}: {target}"
            if path_part:
                base = resolved_root if path_part.startswith("/") else source.parent.resolve()
                dest = (base / path_part.lstrip("/")).resolve()
                if dest != resolved_root and resolved_root not in dest.parents:
                    problems.append(f"{where}: points outside the repository")
                    continue
                if not dest.exists():
                    problems.append(f"{where}: no such file or folder")
                    continue
            else:
                dest = source.resolve()
            if anchor and dest.suffix == ".md" and dest.is_file() and unquote(anchor).lower() not in anchors_of(dest):
                problems.append(f"{where}: no heading with anchor #{anchor} in {dest.relative_to(resolved_root)}")
    return problems


def foreign_paths(root: Path, files: Iterable[Path]) -> list[str]:
    """One line per mention of the shared reference folder or of an absolute path near the clone."""
    resolved = root.resolve()
    prefixes = [_SHARED_REFERENCE, f"{resolved}/"]
    if resolved.parent != resolved.parent.parent:  # the clone's own parent folder, unless it is "/"
        prefixes.append(f"{resolved.parent}/")
    pattern = re.compile(r"(?<![\w.\-])(?:" + "|".join(re.escape(p) for p in prefixes) + r")")
    problems: list[str] = []
    for rel in files:
        try:
            text = (root / rel).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # not text after all
        for number, line in enumerate(text.splitlines(), start=1):
            match = pattern.search(line)
            if match:
                problems.append(f"{rel}:{number}: {line.strip()[:160]}")
    return problems


# -- the checker checks itself ---------------------------------------------------------------------


def test_github_slugs() -> None:
    assert github_slug("3. Telnyx") == "3-telnyx"
    assert github_slug("3. Gateway contracts") == "3-gateway-contracts"
    assert github_slug("Audio: `audio.{call_id}.{track}`") == "audio-audiocall_idtrack"
    assert github_slug("SgwNatsDisconnected") == "sgwnatsdisconnected"
    assert github_slug("Talking back (bidirectional streams)") == "talking-back-bidirectional-streams"
    assert anchors("# A\n\n## A\n\nText\n---\n```\n# not a heading\n```\n") == {"a", "a-1", "text"}


def test_checker_catches_broken_links_and_foreign_paths(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "guide.md").write_text("# Guide\n\n## 2. Setup\n", encoding="utf-8")
    (tmp_path / "README.md").write_text(
        "[ok](docs/guide.md) [ok](docs/guide.md#2-setup) [ok](docs/) [ok](#readme)\n"
        "[ext](https://example.com/x.md) `[code](missing.md)`\n"
        "```\n[fenced](missing.md)\n```\n"
        "# README\n"
        "[bad](docs/missing.md) [bad](docs/guide.md#3-nothing) [bad](../outside.md) [bad](#nowhere)\n"
        f"see {_SHARED_REFERENCE}/notes\n",
        encoding="utf-8",
    )
    problems = broken_links(tmp_path, [Path("README.md"), Path("docs/guide.md")])
    assert [p.split(": ")[1] for p in problems] == [
        "docs/missing.md",
        "docs/guide.md#3-nothing",
        "../outside.md",
        "#nowhere",
    ]
    assert len(foreign_paths(tmp_path, [Path("README.md"), Path("docs/guide.md")])) == 1


# -- the repository --------------------------------------------------------------------------------


def test_the_documentation_is_found() -> None:
    found = {p.as_posix() for p in markdown_files(REPO_ROOT)}
    assert {"README.md", "docs/README.md", "docs/protocols.md", "docs/design.md"} <= found


def test_every_relative_link_resolves() -> None:
    problems = broken_links(REPO_ROOT, markdown_files(REPO_ROOT))
    assert not problems, "dead links:\n" + "\n".join(problems)


def test_no_file_points_outside_the_clone() -> None:
    files = text_files(REPO_ROOT)
    assert any(p.suffix == ".py" for p in files) and any(p.suffix == ".md" for p in files)
    problems = foreign_paths(REPO_ROOT, files)
    assert not problems, "machine-specific paths (put the facts in the repository instead):\n" + "\n".join(problems)
