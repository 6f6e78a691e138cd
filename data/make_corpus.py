#!/usr/bin/env python3
"""Builds the dMX English corpus from Debian packages and cuts it into train / valid / test.

Sources (see data/README.md for licenses):
  * the King James Bible, read with the `bible` program of bible-kjv (data in bible-kjv-text);
  * the reStructuredText sources of the Python 3.11 documentation (python3.11-doc).

Every unit of text (a Bible chapter, a documentation page) becomes one document in the
WikiText-2 raw layout: " = Title = " headings, " = = Section = = " subheadings, one paragraph per
line, each line with a leading and trailing space, documents and paragraphs separated by " "
lines. A unit goes to test / valid / train by a SHA-256 of its name, so the split never depends
on file-system order, and the output is byte-for-byte the same on every run.

Usage: make_corpus.py [--out DIR] [--check]
  --out DIR   where wiki.{train,valid,test}.raw go (default: the folder of this script)
  --check     rebuild and compare valid/test with the shipped files; exit 1 on a difference
"""
import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unicodedata

PYDOC_ROOT = "/usr/share/doc/python3.11/html/_sources"
TEST_PERCENT = 3   # of units by hash; a few hundred KB each
VALID_PERCENT = 3

# ---------------------------------------------------------------- Bible -----------------------


def bible_units():
    """(name, title, [paragraphs]) per chapter. Verse numbers dropped, wrapped lines joined."""
    try:
        out = subprocess.run(["bible", "-l0", "gen1-rev22"], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as e:
        sys.exit(f"make_corpus: cannot run `bible` (install bible-kjv and bible-kjv-text): {e}")
    text = out.stdout.decode("utf-8")
    units = []
    title, verses = None, []

    def flush():
        if title and verses:
            units.append(("kjv/" + title, title, [" ".join(verses)]))

    for line in text.split("\n"):
        m_head = re.fullmatch(r"((?:[1-3] )?[A-Z][A-Za-z ]*?) (\d+)", line.strip())
        m_verse = re.match(r"^\s+(\d+) (.*)$", line)
        if m_head and not line.startswith(" "):
            flush()
            title, verses = f"{m_head.group(1)} {m_head.group(2)}", []
        elif m_verse:
            verses.append(m_verse.group(2).strip())
        elif line.strip() and verses:
            verses[-1] += " " + line.strip()
    flush()
    if len(units) != 1189:
        sys.exit(f"make_corpus: expected the 1189 chapters of the KJV, got {len(units)}")
    return units


# ---------------------------------------------------------------- Python docs -----------------

# Directives whose bodies are not prose (code, indexes, tables of contents, ...).
SKIP_DIRECTIVES = {
    "code-block", "code", "sourcecode", "index", "productionlist", "doctest", "testcode",
    "testoutput", "testsetup", "testcleanup", "toctree", "literalinclude", "highlight",
    "highlightlang", "csv-table", "list-table", "table", "raw", "image", "figure", "only",
    "moduleauthor", "sectionauthor", "include", "audit-event", "availability", "impl-detail",
    "opcode", "cmdoption", "option", "envvar", "c:macro", "c:var", "c:type", "c:member",
    "grammar-snippet", "literalinclude", "rubric", "tabularcolumns", "program", "currentmodule",
    "module", "default-role", "role", "versionchanged", "deprecated-removed",
}
ADORNMENT = re.compile(r"^([=\-~^\"*+#`'.:_])\1{2,}\s*$")


def clean_inline(s):
    s = re.sub(r":[\w:.+-]+:`([^`<]*?)\s*<[^`>]*>`", r"\1", s)        # :role:`text <target>`
    s = re.sub(r":[\w:.+-]+:`!?~?([^`]*?)`",
               lambda m: m.group(1).rsplit(".", 1)[-1] if m.group(0).find("~") >= 0
               else m.group(1), s)                                     # :role:`x`, :role:`~a.b`
    s = re.sub(r"``([^`]*)``", r"\1", s)                               # ``literal``
    s = re.sub(r"`([^`<]*?)\s*<[^`>]*>`__?", r"\1", s)                 # `text <url>`_
    s = re.sub(r"`([^`]*)`_?_?", r"\1", s)                             # `ref`_ / `default role`
    s = re.sub(r"\*\*([^*]+)\*\*", r"\1", s)
    s = re.sub(r"(?<![\w*])\*([^*\s][^*]*?)\*(?![\w*])", r"\1", s)
    s = re.sub(r"\|(\w[\w -]*)\|", r"\1", s)                           # |substitution|
    s = re.sub(r"\[#\w*\]_", "", s)                                    # footnote refs
    s = s.replace("\\ ", "").replace("\\", "")
    return re.sub(r"\s+", " ", s).strip()


def rst_units():
    units = []
    for root, dirs, files in os.walk(PYDOC_ROOT):
        dirs.sort()
        for f in sorted(files):
            if f.endswith(".txt"):
                path = os.path.join(root, f)
                rel = os.path.relpath(path, PYDOC_ROOT)
                if rel.startswith("whatsnew/changelog"):
                    continue  # issue numbers and commit titles, not prose
                with open(path, encoding="utf-8") as fh:
                    unit = rst_to_unit(rel, fh.read())
                if unit:
                    units.append(unit)
    if not units:
        sys.exit(f"make_corpus: no reST sources under {PYDOC_ROOT} (install python3.11-doc)")
    return units


def rst_to_unit(rel, text):
    """(name, title, [paragraphs incl. ' = = heading = = ' markers]) of one reST file."""
    lines = text.replace("\t", "    ").split("\n")
    levels = []           # adornment styles in order of first appearance
    out = []              # paragraphs / heading markers
    title = None
    para = []
    skip_indent = None    # skip lines indented more than this (a dropped block's body)
    literal_next = False  # the paragraph ended with '::': its indented block is code

    def indent_of(line):
        return len(line) - len(line.lstrip(" "))

    def flush_para():
        nonlocal para
        if para:
            s = clean_inline(" ".join(para))
            if len(s) >= 20 and re.search(r"[A-Za-z]{3}", s):
                out.append(s)
        para = []

    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if skip_indent is not None:
            if not stripped or indent_of(line) > skip_indent:
                i += 1
                continue
            skip_indent = None
        if not stripped:
            flush_para()
            i += 1
            continue
        ind = indent_of(line)
        if literal_next:
            literal_next = False
            if ind > 0 or stripped.startswith(">>>"):
                flush_para()
                skip_indent = ind - 1 if ind > 0 else -1
                if ind == 0:  # unindented doctest: skip to the next blank line
                    while i < len(lines) and lines[i].strip():
                        i += 1
                    skip_indent = None
                continue
        # Section headings: text + underline (optionally an overline too).
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        over = ADORNMENT.match(line) and i + 2 < len(lines) and ADORNMENT.match(lines[i + 2])
        if over and lines[i + 1].strip() and not ADORNMENT.match(lines[i + 1]):
            style, head, step = "o" + line.strip()[0], lines[i + 1].strip(), 3
        elif ADORNMENT.match(nxt) and not ADORNMENT.match(line) and ind == 0 and \
                len(nxt.strip()) >= len(stripped) - 1:
            style, head, step = "u" + nxt.strip()[0], stripped, 2
        else:
            style = None
        if style:
            flush_para()
            if style not in levels:
                levels.append(style)
            head = clean_inline(head)
            if title is None:
                title = head
            elif head:
                depth = min(levels.index(style) + 1, 3)
                out.append(("= " * depth + head + " =" * depth))
            i += step
            continue
        if ADORNMENT.match(line) or re.match(r"^\s*[+|]([-=+]|\s)", line):
            i += 1  # stray adornments, grid tables
            continue
        m_dir = re.match(r"^(\s*)\.\.\s+([\w:-]+)::(.*)$", line)
        if m_dir:
            flush_para()
            name = m_dir.group(2)
            if name in SKIP_DIRECTIVES or ":" in name and name.split(":")[0] not in ("py", "c"):
                skip_indent = ind
            elif name in ("note", "warning", "seealso", "versionadded", "deprecated",
                          "important", "tip", "attention", "caution", "hint"):
                rest = m_dir.group(3).strip()
                if rest and name not in ("versionadded", "deprecated"):
                    para.append(rest)
            # Object descriptions (function::, class::, ...): drop the signature, keep the body.
            i += 1
            while i < len(lines) and re.match(r"^\s+:[\w-]+:", lines[i]):
                i += 1  # directive options
            continue
        if stripped.startswith(".."):  # comments, link targets, substitution definitions
            flush_para()
            skip_indent = ind
            i += 1
            continue
        if stripped.startswith(">>>") or stripped.startswith("... ") or stripped == "...":
            flush_para()
            i += 1
            continue
        # List bullets and field markers start a new paragraph.
        m_item = re.match(r"^\s*(?:[*\-+•]|#\.|\d+\.|\(\w\))\s+(.*)$", line)
        if m_item:
            flush_para()
            stripped = m_item.group(1)
        if stripped.endswith("::"):
            literal_next = True
            stripped = stripped[:-2].rstrip()
            stripped = stripped + ":" if stripped and not stripped.endswith(":") else stripped
        if stripped:
            para.append(stripped)
        i += 1
    flush_para()
    body = [p for p in out if not p.startswith("= ")]
    if not title or sum(len(p) for p in body) < 200:
        return None
    # Drop headings left with nothing under them (e.g. a section that was all code).
    kept = []
    for j, p in enumerate(out):
        if p.startswith("= ") and (j + 1 == len(out) or out[j + 1].startswith("= ")):
            continue
        kept.append(p)
    return ("pydoc/" + rel, title, kept)


# ---------------------------------------------------------------- layout and split ------------


def normalize(s):
    s = unicodedata.normalize("NFC", s)
    return "".join(c for c in s if c == "\n" or unicodedata.category(c)[0] != "C")


def render(unit):
    _, title, paras = unit
    lines = [" ", f" = {normalize(title)} = ", " "]
    for p in paras:
        lines.append(f" {normalize(p)} ")
        if p.startswith("= "):
            lines.append(" ")
        else:
            lines.append(" ")
    return "\n".join(lines) + "\n"


def split_of(name):
    h = int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big") % 100
    if h < TEST_PERCENT:
        return "test"
    if h < TEST_PERCENT + VALID_PERCENT:
        return "valid"
    return "train"


def write_atomic(path, text):
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=d)
    with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=here, help="output folder (default: %(default)s)")
    ap.add_argument("--check", action="store_true",
                    help="compare the rebuilt valid/test splits with the shipped ones")
    args = ap.parse_args()

    print("make_corpus: reading the KJV Bible ...", file=sys.stderr)
    units = bible_units()
    print("make_corpus: reading the Python 3.11 documentation sources ...", file=sys.stderr)
    units += rst_units()
    units.sort(key=lambda u: u[0])
    parts = {"train": [], "valid": [], "test": []}
    for u in units:
        parts[split_of(u[0])].append(render(u))
    texts = {k: "".join(v) for k, v in parts.items()}

    if args.check:
        bad = 0
        for k in ("valid", "test"):
            path = os.path.join(here, f"wiki.{k}.raw")
            with open(path, encoding="utf-8") as fh:
                same = fh.read() == texts[k]
            print(f"make_corpus: {path}: {'identical' if same else 'DIFFERS'}")
            bad += not same
        return 1 if bad else 0

    os.makedirs(args.out, exist_ok=True)
    for k in ("train", "valid", "test"):
        path = os.path.join(args.out, f"wiki.{k}.raw")
        write_atomic(path, texts[k])
        print(f"make_corpus: {path}: {len(parts[k])} documents, "
              f"{len(texts[k].encode('utf-8'))} bytes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
