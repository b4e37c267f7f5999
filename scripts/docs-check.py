#!/usr/bin/env python3
"""Every relative link of the repository's Markdown files points to something that exists.

A link `](path)` must name an existing file or directory, relative to the file it is in; `](path#anchor)`
and `](#anchor)` must also name a heading of that Markdown file (GitHub's anchors: lower case, punctuation
dropped, spaces as hyphens, `-1`, `-2` for repeated headings). Links to other sites are not followed.
Exit 1 with one line per broken link. Standard library only: `make test` runs it before anything is built.
"""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINK = re.compile(r"\]\(([^)\s]+)\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
FENCE = re.compile(r"^\s*(```|~~~)")


def markdown_files():
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "ls-files", "--cached", "--others", "--exclude-standard", "*.md"], capture_output=True, text=True,
                             check=True).stdout
        files = [ROOT / line for line in out.splitlines() if line]
    except (OSError, subprocess.CalledProcessError):
        files = [p for p in ROOT.rglob("*.md") if "target" not in p.relative_to(ROOT).parts]
    return sorted(f for f in files if f.is_file())


def lines_outside_code(text):
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield number, line


def slug(heading):
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
    text = text.lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path, cache={}):
    if path not in cache:
        seen, found = {}, set()
        for _, line in lines_outside_code(path.read_text(encoding="utf-8")):
            m = HEADING.match(line)
            if not m:
                continue
            base = slug(m.group(2))
            n = seen.get(base, 0)
            seen[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
        cache[path] = found
    return cache[path]


def main():
    broken = []
    for md in markdown_files():
        for number, line in lines_outside_code(md.read_text(encoding="utf-8")):
            line = re.sub(r"`[^`]*`", "", line)  # code spans hold no links
            for target in LINK.findall(line):
                if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
                    continue
                path, _, anchor = target.partition("#")
                dest = md if not path else (md.parent / path).resolve()
                where = f"{md.relative_to(ROOT)}:{number}: {target}"
                if not dest.exists():
                    broken.append(f"{where}: no such file")
                elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                    broken.append(f"{where}: no heading #{anchor} in {dest.relative_to(ROOT)}")
    for b in broken:
        print(b, file=sys.stderr)
    if broken:
        print(f"docs-check: {len(broken)} broken link(s)", file=sys.stderr)
        return 1
    print(f"docs-check: the links of {len(markdown_files())} Markdown files resolve")
    return 0


if __name__ == "__main__":
    sys.exit(main())
