"""The rsp eval set loads, is big enough, and its loader rejects broken sets."""
from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from evals.dataset import (
    KINDS,
    Dialogue,
    EvalSet,
    EvalSetError,
    Item,
    Turn,
    load_set,
    matches_accept,
    normalize,
)

REPO = Path(__file__).resolve().parent.parent
SET_DIR = REPO / "evals" / "sets" / "rsp"


@pytest.fixture(scope="module")
def real_set() -> EvalSet:
    return load_set("rsp")


def test_real_set_counts(real_set):
    assert real_set.name == "rsp"
    assert real_set.corpus_dir == (REPO / "corpus").resolve()
    assert len(real_set.items) >= 100
    assert len(real_set.dialogues) >= 12
    counts = Counter(item.kind for item in real_set.items)
    assert set(counts) == set(KINDS)
    for kind in KINDS:
        assert counts[kind] >= 8, (kind, counts[kind])
    for dlg in real_set.dialogues:
        assert isinstance(dlg, Dialogue)
        assert 2 <= len(dlg.turns) <= 4, dlg.id
        assert all(isinstance(t, Turn) for t in dlg.turns)
        assert dlg.turns[0].answerable, dlg.id


def test_real_set_item_shape(real_set):
    ids = [i.id for i in real_set.items] + [d.id for d in real_set.dialogues]
    assert len(ids) == len(set(ids))
    unanswerable = [i for i in real_set.items if i.kind == "unanswerable"]
    assert all(not i.answerable and not i.accept for i in unanswerable)
    for item in real_set.items:
        assert isinstance(item, Item)
        assert isinstance(item.accept, tuple) and isinstance(item.evidence, tuple)
        if item.kind == "broad":  # a list: several accept phrases, `need` of them in a correct answer
            assert 2 <= item.need <= len(item.accept) <= 8 and 1 <= len(item.evidence) <= 8, item.id
            assert matches_accept(item.answer + " " + " ".join(item.evidence), item.accept, item.need), item.id
        elif item.kind != "unanswerable":
            assert item.answerable and 1 <= len(item.accept) <= 4 and item.need == 1, item.id
            assert 1 <= len(item.evidence) <= 3, item.id
            # the gold answer itself is accepted
            assert matches_accept(item.answer, item.accept) or any(
                matches_accept(q, item.accept) for q in item.evidence
            ), item.id
    # at most three dialogues carry an unanswerable follow-up
    assert sum(any(not t.answerable for t in d.turns) for d in real_set.dialogues) <= 3


def test_records_are_frozen(real_set):
    with pytest.raises(Exception):
        real_set.items[0].question = "changed"  # type: ignore[misc]


# --------------------------------------------------------------------------- broken copies


@pytest.fixture
def tmp_root(tmp_path) -> Path:
    """A copy of the rsp set and the corpus under a fresh repo root."""
    shutil.copytree(SET_DIR, tmp_path / "evals" / "sets" / "rsp")
    shutil.copytree(REPO / "corpus", tmp_path / "corpus")
    return tmp_path


def _rewrite_items(root: Path, edit) -> None:
    path = root / "evals" / "sets" / "rsp" / "items.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join(edit(lines)) + "\n", encoding="utf-8")


def test_copy_loads_unchanged(tmp_root):
    copy = load_set(root=tmp_root)
    assert len(copy.items) == len(load_set().items)
    assert copy.corpus_dir == (tmp_root / "corpus").resolve()


def test_altered_evidence_names_item(tmp_root):
    target = {}

    def edit(lines):
        for n, line in enumerate(lines):
            obj = json.loads(line)
            if obj["evidence"]:
                obj["evidence"][0] = obj["evidence"][0] + " (not in the corpus)"
                target["id"] = obj["id"]
                lines[n] = json.dumps(obj, ensure_ascii=False)
                return lines
        raise AssertionError("no answerable item")

    _rewrite_items(tmp_root, edit)
    with pytest.raises(EvalSetError) as err:
        load_set(root=tmp_root)
    msg = str(err.value)
    assert target["id"] in msg
    assert "verbatim" in msg
    assert "\n" not in msg


def test_altered_dialogue_evidence_names_dialogue(tmp_root):
    path = tmp_root / "evals" / "sets" / "rsp" / "dialogues.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    obj = json.loads(lines[0])
    obj["turns"][0]["evidence"][0] = obj["turns"][0]["evidence"][0] + " (not in the corpus)"
    lines[0] = json.dumps(obj, ensure_ascii=False)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(EvalSetError, match=obj["id"]):
        load_set(root=tmp_root)


def test_duplicate_id_names_item(tmp_root):
    dup = {}

    def edit(lines):
        dup["id"] = json.loads(lines[0])["id"]
        return lines + [lines[0]]

    _rewrite_items(tmp_root, edit)
    with pytest.raises(EvalSetError) as err:
        load_set(root=tmp_root)
    assert dup["id"] in str(err.value)
    assert "duplicate" in str(err.value)


def test_malformed_json_line_names_file_and_line(tmp_root):
    def edit(lines):
        lines.insert(2, '{"id": "broken-01", "kind": "fact", "question": ')
        return lines

    _rewrite_items(tmp_root, edit)
    with pytest.raises(EvalSetError) as err:
        load_set(root=tmp_root)
    msg = str(err.value)
    assert "items.jsonl" in msg and "line 3" in msg


def test_accept_typo_is_caught(tmp_root):
    def edit(lines):
        for n, line in enumerate(lines):
            obj = json.loads(line)
            if obj["accept"]:
                obj["accept"] = ["Gryphn Scientifc"]
                lines[n] = json.dumps(obj, ensure_ascii=False)
                return lines
        raise AssertionError("no answerable item")

    _rewrite_items(tmp_root, edit)
    with pytest.raises(EvalSetError, match="Gryphn Scientifc"):
        load_set(root=tmp_root)


def test_unknown_kind_rejected(tmp_root):
    def edit(lines):
        obj = json.loads(lines[0])
        obj["kind"] = "trivia"
        lines[0] = json.dumps(obj, ensure_ascii=False)
        return lines

    _rewrite_items(tmp_root, edit)
    with pytest.raises(EvalSetError, match="unknown kind"):
        load_set(root=tmp_root)


@pytest.mark.parametrize("need", [0, 9, "2", True])
def test_need_outside_the_accept_phrases_is_rejected(tmp_root, need):
    def edit(lines):
        obj = json.loads(lines[0])
        obj["need"] = need
        lines[0] = json.dumps(obj, ensure_ascii=False)
        return lines

    _rewrite_items(tmp_root, edit)
    with pytest.raises(EvalSetError, match="need must be a whole number"):
        load_set(root=tmp_root)


def test_unanswerable_with_evidence_rejected(tmp_root):
    def edit(lines):
        for n, line in enumerate(lines):
            obj = json.loads(line)
            if obj["kind"] == "unanswerable":
                obj["evidence"] = ["Initial release. ASL-1 to ASL-4 framework"]
                lines[n] = json.dumps(obj, ensure_ascii=False)
                return lines
        raise AssertionError("no unanswerable item")

    _rewrite_items(tmp_root, edit)
    with pytest.raises(EvalSetError, match="unanswerable"):
        load_set(root=tmp_root)


def test_unknown_set_lists_available(tmp_root):
    with pytest.raises(EvalSetError) as err:
        load_set("nope", root=tmp_root)
    assert "rsp" in str(err.value)
    assert issubclass(EvalSetError, ValueError)


# --------------------------------------------------------------------------- matching


def test_normalize():
    assert normalize("“Don’t Worry About the Vase”") == "don t worry about the vase"
    assert normalize("RSP v3 — released   24 February 2026.") == "rsp v3 released 24 february 2026"
    assert normalize("3–6 months") == normalize("3-6 months") == "3 6 months"
    assert normalize("ＡＳＬ－３") == "asl 3"  # NFKC folds full-width forms
    assert normalize("") == ""


def test_matches_accept():
    assert matches_accept("It was released on 24 February 2026.", ["24 february 2026"])
    assert matches_accept("Don't Worry About the Vase", ["Don’t Worry About the Vase"])
    assert matches_accept("Risk Reports every 3-6 months", ["3–6 months"])
    assert matches_accept("ML Alignment and Theory Scholars (ML Alignment & Theory Scholars)", ["ml alignment & theory scholars"])
    assert matches_accept("GPT-5.4 was classed HIGH CYBER.", ["High cyber"])
    assert not matches_accept("It was released in 2025.", ["24 February 2026"])
    assert not matches_accept("anything", [])
    assert not matches_accept("anything", ["", "  "])
    # a broad question's answer must hold `need` of the phrases
    listed = "Agnes chairs; Desmond keeps the accounts."
    assert matches_accept(listed, ["Agnes", "Desmond", "Lucia"], need=2)
    assert not matches_accept(listed, ["Agnes", "Desmond", "Lucia"], need=3)
    assert not matches_accept(listed, ["Agnes", "agnes", ""], need=2)


# --------------------------------------------------------------------------- sets anywhere, drafts, review


def test_set_folder_anywhere_with_corpus_beside_it(tmp_path):
    set_dir = tmp_path / "elsewhere" / "myset"
    (set_dir / "docs").mkdir(parents=True)
    (set_dir / "docs" / "page.html").write_text("<h1>Page</h1><p>The <em>blue</em> door opens at nine.</p>")
    (set_dir / "set.json").write_text(json.dumps({"name": "mine", "corpus": "docs"}))
    rows = [
        {"id": "a", "kind": "fact", "question": "When does the blue door open?", "answer": "at nine",
         "accept": ["nine"], "evidence": ["The blue door opens at nine."], "draft": True},
        {"id": "b", "kind": "fact", "question": "Is it any good?", "review": True},
    ]
    (set_dir / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))  # no dialogues.jsonl
    es = load_set(set_dir)
    assert es.name == "mine" and es.corpus_dir == (set_dir / "docs").resolve()
    assert [i.id for i in es.items] == ["a"] and es.drafts == 1 and es.review == ("b",)
    assert es.dialogues == () and es.thresholds_path == set_dir / "thresholds.json"
    assert "1 drafts left" in es.status() and "1 items marked for review" in es.status()
    # evidence is checked against the extracted text: the raw HTML would not match
    rows[0]["evidence"] = ["The <em>blue</em> door"]
    (set_dir / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(EvalSetError, match="verbatim"):
        load_set(set_dir)


def test_squad_build_from_a_squad_shaped_file(tmp_path):
    from evals import squad

    def para(n, k):
        ctx = f"Paragraph {n}.{k} says that the river Alpha{n}{k} is {100 + k} km long.\nIt flows north."
        qas = [
            {"id": f"q{n}{k}{j}", "question": f"How long is the river Alpha{n}{k} ({j})?",
             "answers": [{"answer_start": 0, "text": f"{100 + k} km"}, {"answer_start": 0, "text": f"{100 + k} km"}]}
            for j in range(3)
        ]
        qas.append({"id": f"bad{n}{k}", "question": "Unanswerable here?", "answers": [{"answer_start": 0, "text": "absent words"}]})
        return {"context": ctx, "qas": qas}

    fake = {"version": "1.1", "data": [{"title": f"Article_{n}", "paragraphs": [para(n, k) for k in range(3)]} for n in range(4)]}
    out = squad.build(fake, tmp_path / "squad", per_article=5, seed=1)
    es = load_set(out)
    assert es.name == "squad-dev" and es.variants == ("full",)
    assert len(es.items) == 20 and not any(i.id.startswith("squad-bad") for i in es.items)
    files = sorted(p.name for p in (out / "corpus").iterdir())
    assert files == ["01-article-0.md", "02-article-1.md", "03-article-2.md", "04-article-3.md"]
    text = (out / "corpus" / "01-article-0.md").read_text()
    assert text.startswith("# Article 0\n\n") and "\nIt flows" not in text  # paragraphs on one line each
    assert all(i.accept == (i.answer,) and i.answer in i.evidence[0] for i in es.items)
    assert dict(es.headline)["passage hit"] == "citation_recall"
    again = squad.build(fake, tmp_path / "squad2", per_article=5, seed=1)
    assert (again / "items.jsonl").read_text() == (out / "items.jsonl").read_text()  # seeded: the same sample
    with pytest.raises(EvalSetError, match="SQuAD"):
        squad.build({"nope": 1}, tmp_path / "x")


def test_squad_holdout_leaves_paragraphs_out_and_asks_about_them(tmp_path):
    from evals import squad

    def para(n, k):
        ctx = f"In Article {n}, the tower Beta{n}x{k} stands {200 + 10 * n + k} metres tall."
        qas = [{"id": f"q{n}x{k}x{j}", "question": f"How tall is the tower Beta{n}x{k} ({j})?",
                "answers": [{"answer_start": 0, "text": f"{200 + 10 * n + k} metres"}]} for j in range(2)]
        if k == 0:  # its answer is also said by a kept paragraph: never an unanswerable item
            qas.append({"id": f"shared{n}", "question": "Which article is this?", "answers": [{"answer_start": 0, "text": f"Article {n}"}]})
        return {"context": ctx, "qas": qas}

    fake = {"version": "1.1", "data": [{"title": f"Article_{n}", "paragraphs": [para(n, k) for k in range(6)]} for n in range(5)]}
    out = squad.build_holdout(fake, tmp_path / "holdout", articles=4, seed=3, answerable=3, unanswerable=2)
    es = load_set(out)  # every answerable item's evidence is verbatim in the corpus
    corpus = "".join(p.read_text() for p in sorted((out / "corpus").iterdir()))
    assert len(list((out / "corpus").iterdir())) == 4 and corpus.count("stands") == 4 * 4  # a third left out
    yes = [i for i in es.items if i.answerable]
    no = [i for i in es.items if not i.answerable]
    assert len(yes) == 4 * 3 and len(no) == 4 * 2
    towers = {i.id: i.question.split()[5] for i in es.items}
    assert all(towers[i.id] in corpus for i in yes) and not any(towers[i.id] + " " in corpus for i in no)
    assert not any(i.id.startswith("squad-shared") for i in no)
    assert dict(es.headline)["abstains when it should"] == "abstain_unanswerable"
    again = squad.build_holdout(fake, tmp_path / "again", articles=4, seed=3, answerable=3, unanswerable=2)
    assert (again / "items.jsonl").read_text() == (out / "items.jsonl").read_text()


def test_brackets_inside_a_quoted_code_line_are_not_markers():
    from types import SimpleNamespace

    from evals.metrics import citation_checks

    quote = "newListeners[0]();"
    text = {"events.md": f"Example: {quote} done."}
    cite = SimpleNamespace(n=1, source="events.md", start=9, end=9 + len(quote), quote=quote)
    assert citation_checks(SimpleNamespace(text=f"{quote} [1]", citations=[cite]), text)[0]
    assert not citation_checks(SimpleNamespace(text=f"{quote} [1] [2]", citations=[cite]), text)[0]  # [2] names nothing
    assert not citation_checks(SimpleNamespace(text=quote, citations=[cite]), text)[0]  # the citation is never used
