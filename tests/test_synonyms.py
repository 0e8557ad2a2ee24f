"""The synonym table: the shipped file, its checks, how it is built and what it changes."""
from __future__ import annotations

import io
import shutil
import zipfile

import numpy as np
import pytest

from assistant import synonyms as syn
from assistant.terms import stem
from conftest import assistant_over


def test_the_shipped_table_matches_its_manifest_and_pairs_synonyms():
    table = syn.load()
    assert len(table) > 30000
    assert stem("risk") in {st for _, st, _ in table.of("danger")}
    assert all(0.7 <= sim <= 1.0 for _, _, sim in table.of("danger"))
    assert table.of("qwzxv") == ()


def test_only_synonyms_the_corpus_uses_are_looked_at():
    table = syn.load()
    known = {stem("risk"), stem("external")}.__contains__
    alts = table.expansions("Which outside bodies judge the danger?", known)
    assert set(alts) == {stem("outside"), stem("danger")}
    assert set(alts[stem("danger")]) == {stem("risk")}
    # a word the corpus lacks is searched by its closest synonym the corpus uses; a known one is not
    assert table.bridge("Which outside bodies judge the danger?", known) == ["externally", "risks"]
    assert table.bridge("the risk", known) == []


@pytest.mark.parametrize("damage", ["corrupt", "no table", "no manifest"])
def test_a_damaged_table_is_one_line_naming_the_rebuild(tmp_path, damage):
    for name in (syn.MANIFEST, "synonyms.tsv.gz"):
        shutil.copy(syn.MODELS_DIR / name, tmp_path / name)
    if damage == "corrupt":
        data = bytearray((tmp_path / "synonyms.tsv.gz").read_bytes())
        data[len(data) // 2] ^= 0xFF
        (tmp_path / "synonyms.tsv.gz").write_bytes(bytes(data))
    elif damage == "no table":
        (tmp_path / "synonyms.tsv.gz").unlink()
    else:
        (tmp_path / syn.MANIFEST).unlink()
    with pytest.raises(syn.SynonymsError) as err:
        syn.load(tmp_path)
    assert "make synonyms" in str(err.value) and "\n" not in str(err.value)


def test_the_build_keeps_close_words_one_per_stem_and_is_byte_reproducible(tmp_path):
    from training import synonyms as build

    rng = np.random.default_rng(0)
    base = rng.normal(size=300)
    near = {"hazard": 0.05, "hazards": 0.06, "peril": 0.08, "the": 0.01}  # 'hazards' shares a stem; 'the' is a stopword
    lines = [f"danger {' '.join(f'{x:.5f}' for x in base)}"]
    for word, noise in near.items():
        lines.append(f"{word} {' '.join(f'{x:.5f}' for x in base + noise * rng.normal(size=300) * 10)}")
    lines.append(f"banana {' '.join(f'{x:.5f}' for x in rng.normal(size=300))}")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("vectors.txt", "\n".join(lines) + "\n")
    (tmp_path / "v.zip").write_bytes(buf.getvalue())
    words, vecs = build.read_vectors(tmp_path / "v.zip")
    table = dict(line.split("\t", 1) for line in build.neighbours(words, vecs, 0.7, 6))
    assert "the" not in table and "banana" not in table
    kept = [part.rsplit(" ", 1)[0] for part in table["danger"].split("\t")]
    assert kept[0] == "hazard" and "hazards" not in kept and "peril" in kept
    a = build.write_table(build.neighbours(words, vecs, 0.7, 6), tmp_path / "a")
    b = build.write_table(build.neighbours(words, vecs, 0.7, 6), tmp_path / "b")
    assert a["sha256"] == b["sha256"]
    assert syn.load(tmp_path / "a").of("danger")[0][0] == "hazard"


REVIEW_DOC = """# Oversight

## Reviewers

The external organisations chosen as reviewers receive unredacted access to internal documents.
Each quarter the company publishes a risk report on its models.

## Premises

The offices moved to a larger building in the harbour district.
"""


def test_a_question_worded_apart_from_the_corpus_meets_it_through_synonyms(tmp_path, embedder, monkeypatch):
    question = "Which outside bodies get uncensored access to internal documents?"
    answer = assistant_over(tmp_path / "on", {"review.md": REVIEW_DOC}, embedder).ask(question)
    assert not answer.abstained, answer.text
    assert answer.citations[0].quote.startswith("The external organisations chosen as reviewers")
    monkeypatch.setenv("RAG_SYNONYMS", "0")
    from assistant.pipeline import Assistant
    from assistant.settings import load_settings
    from ingest.settings import StoreSettings

    off = load_settings(store=StoreSettings(path=tmp_path / "on" / "store"), corpus_dirs=(tmp_path / "on" / "corpus",))
    assert off.synonyms is False
    plain = Assistant(off, embedder=embedder).ask(question)
    assert plain.confidence < answer.confidence
