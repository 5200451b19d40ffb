"""The README is a front door, and the docs hold together: README.md is at most 15 KB, its
first 40 lines hold the question, the headline table and the two commands, and every relative
link in README.md and docs/*.md resolves to a file (and an ``#anchor`` to a heading of it,
by GitHub's slug rules). External links are allowed and not fetched."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from reasonlib.report import results_md

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
MAX_README = 15 * 1024
HEAD_LINES = 40
QUESTION = re.compile(r"\bwhen does\b[^?]*\breally help\b[^?]*\?", re.I)


# ---- the checks, as functions of text (so they can be run on any README) -------------------------
def front_door_problems(text: str) -> list[str]:
    """What keeps ``text`` from being the README's front door (empty when it is one)."""
    out = []
    size = len(text.encode())
    if size > MAX_README:
        out.append(f"README.md is {size:,} bytes, over {MAX_README:,}")
    head = "\n".join(text.splitlines()[:HEAD_LINES])
    if not QUESTION.search(" ".join(head.split())):
        out.append(f"no question ('when does ... really help ...?') in the first {HEAD_LINES} lines")
    start = results_md.markers("headline")[0]
    if start not in head or not re.search(r"^\|.*\|\s*$", head.split(start, 1)[-1], re.M):
        out.append(f"no headline table ({start!r} and its rows) in the first {HEAD_LINES} lines")
    for cmd in ("make run", "make test"):
        if not re.search(rf"^{cmd}\b", head, re.M):
            out.append(f"no `{cmd}` command line in the first {HEAD_LINES} lines")
    return out


_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def _prose(text: str) -> str:
    """The text without fenced code blocks and inline code, where nothing is a link or a heading."""
    return _CODE.sub("", _FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup and punctuation dropped (but '-' and '_'),
    lowercase, each space a '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)     # a link: its text
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading's anchor, duplicates numbered as GitHub does (``x``, ``x-1``, ...)."""
    seen: dict[str, int] = {}
    out = set()
    for line in re.sub(_FENCE, "", text).splitlines():
        m = re.match(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        s = slug(m.group(1))
        n = seen.get(s, 0)
        out.add(s if n == 0 else f"{s}-{n}")
        seen[s] = n + 1
    return out


def links(text: str) -> list[str]:
    return _LINK.findall(_prose(text))


def broken_links(path: Path, text: str | None = None, root: Path = ROOT) -> list[str]:
    """The relative links of markdown file ``path`` that do not resolve (external ones are skipped)."""
    text = path.read_text() if text is None else text
    out = []
    for target in links(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):   # http(s), mailto, ...: not fetched
            continue
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        if file and not dest.exists():
            out.append(f"{path.name}: {target} -> no such file")
            continue
        if anchor:
            if dest.suffix != ".md":
                out.append(f"{path.name}: {target} -> an anchor into a file that is not markdown")
            elif anchor not in anchors(dest.read_text()):
                out.append(f"{path.name}: {target} -> no heading with anchor #{anchor} in {dest.name}")
        if file and not dest.resolve().is_relative_to(root):
            out.append(f"{path.name}: {target} -> outside the repository")
    return out


# ---- the committed README and docs ----------------------------------------------------------------
def test_readme_is_a_front_door():
    problems = front_door_problems(README.read_text())
    assert not problems, "\n".join(problems)


def test_docs_exist_and_the_readme_links_each():
    assert DOCS, "no docs/*.md"
    targets = {t.partition("#")[0] for t in links(README.read_text())}
    missing = [p.name for p in DOCS if f"docs/{p.name}" not in targets]
    assert not missing, f"README.md does not link {missing}"


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(path):
    bad = broken_links(path)
    assert not bad, "\n".join(bad)


# ---- the checks themselves -------------------------------------------------------------------------
def test_slugs_follow_githubs_rules():
    assert slug("The two commands") == "the-two-commands"
    assert slug("The study as one command: `python -m reasonlib run`") == \
        "the-study-as-one-command-python--m-reasonlib-run"
    assert slug("Workers, threads, and clusters") == "workers-threads-and-clusters"
    assert slug("RL with headroom (calibration seeds)") == "rl-with-headroom-calibration-seeds"
    assert slug("snake_case and 4-digit") == "snake_case-and-4-digit"
    assert anchors("# A\n## A\n```\n# not a heading\n```\n### B!\n") == {"a", "a-1", "b"}


def test_front_door_check_refuses_a_long_readme_and_a_late_table():
    start, end = results_md.markers("headline")
    good = ("# t\n\nWhen does RL after curriculum SFT really help a small model reason?\n\n"
            f"{start}\n| a | b |\n|---|---|\n{end}\n\n```bash\nmake run\nmake test\n```\n")
    assert front_door_problems(good) == []
    assert any("bytes, over" in p for p in front_door_problems(good + "x" * MAX_README))
    late = "# t\n" + "filler\n" * HEAD_LINES + good
    assert len(front_door_problems(late)) == 4
    assert any("make test" in p for p in front_door_problems(good.replace("make test", "make tests")))


def test_link_check_finds_missing_files_and_anchors(tmp_path):
    (tmp_path / "docs").mkdir()
    page = tmp_path / "docs" / "a.md"
    (tmp_path / "docs" / "b.md").write_text("# B\n## Sub part\n")
    page.write_text("# A\n\n[ok](b.md#sub-part) [self](#a) [web](https://example.org/x#y) "
                    "![img](../pic.png) [gone](c.md) [bad anchor](b.md#nope) [up](../../x.md)\n"
                    "`[not a link](nowhere.md)`\n\n```\n[nor this](nowhere.md)\n```\n")
    (tmp_path / "pic.png").write_bytes(b"")
    bad = broken_links(page, root=tmp_path)
    assert len(bad) == 3, bad
    assert any("c.md -> no such file" in b for b in bad)
    assert any("#nope" in b for b in bad)
    assert any("../../x.md" in b for b in bad)
