"""Broad and list questions: the answer quotes the list or the table rows, each item cited; a
question about one row still gets that row alone. A small corpus written for this test (not an
eval corpus), the real model and an embedded Chroma."""
from __future__ import annotations

import pytest

from conftest import assistant_over

DOC = """# Millbrook Community Orchard

## Founding

The Millbrook Community Orchard was planted on a disused railway siding in the spring of 2011 by
residents of the Millbrook estate.

## Trustees

The orchard is run by a board of volunteer trustees elected each spring:

- Agnes Pollard, who chairs the board and keeps the planting records
- Desmond Okafor, the treasurer, who manages grants and the cider fund
- Lucia Ferreira, who organises the school visits
- Tomasz Wieczorek, who maintains the tools and the irrigation

## Harvest history

| Year | Apples harvested | Notable event |
|---|---|---|
| 2014 | 120 kg | First harvest large enough to press |
| 2016 | 410 kg | A second cider press was bought |
| 2018 | 95 kg | Late frost destroyed most blossom |
| 2020 | 530 kg | Record harvest; surplus given to the food bank |
| 2022 | 480 kg | Twelve heritage varieties grafted |

## Joining

Anyone living within two miles of the orchard may join. Membership costs five pounds a year and
includes a share of the pressed juice.

## Fruit

The orchard grows three kinds of fruit:

### Apples

Forty apple trees stand along the old platform, most of them Bramleys grafted in 2012.

### Pears

Eight Conference pear trees shelter behind the signal box.

### Plums

Six Victoria plum trees were donated by the parish council in 2015.
"""


@pytest.fixture(scope="module")
def orchard(tmp_path_factory, embedder):
    return assistant_over(tmp_path_factory.mktemp("orchard"), {"orchard.md": DOC}, embedder)


def _quotes_are_spans(answer) -> None:
    for c in answer.citations:
        assert DOC[c.start : c.end] == c.quote


@pytest.mark.parametrize(
    "question",
    ["Summarise the harvest history of the orchard.", "List the harvests of the orchard by year."],
)
def test_a_broad_question_quotes_the_table_rows_each_cited(orchard, question):
    answer = orchard.ask(question)
    assert not answer.abstained, answer.text
    years = [y for y in ("2014", "2016", "2018", "2020", "2022") if y in answer.text]
    assert len(years) >= 4, answer.text
    assert len(answer.citations) >= 4
    for n in range(1, len(answer.citations) + 1):
        assert f"[{n}]" in answer.text
    _quotes_are_spans(answer)


@pytest.mark.parametrize("question", ["Who are the trustees of the orchard?", "Which volunteers are on the board of trustees?"])
def test_a_plural_question_quotes_the_list_it_finds(orchard, question):
    answer = orchard.ask(question)
    assert not answer.abstained, answer.text
    names = [n for n in ("Agnes Pollard", "Desmond Okafor", "Lucia Ferreira", "Tomasz Wieczorek") if n in answer.text]
    assert len(names) >= 3, answer.text
    _quotes_are_spans(answer)


def test_a_question_about_one_row_is_not_answered_with_the_whole_table(orchard):
    answer = orchard.ask("How many kilograms of apples were harvested in 2018?")
    assert not answer.abstained, answer.text
    assert "95 kg" in answer.citations[0].quote  # the row asked for comes first
    assert sum(y in answer.text for y in ("2014", "2016", "2020", "2022")) < 4, answer.text  # not the table
    _quotes_are_spans(answer)


@pytest.mark.parametrize("question", ["How many kinds of fruit does the orchard grow?", "Which kinds of fruit does the orchard grow?"])
def test_a_lead_in_to_subsections_brings_each_subsection_by_its_heading(orchard, question):
    """'… three kinds of fruit:' closes its section, and the subsections that follow are what it
    leads into: each is named by its heading and quoted by its first sentence, each cited."""
    answer = orchard.ask(question)
    assert not answer.abstained, answer.text
    assert "three kinds of fruit" in answer.citations[0].quote
    for heading, fact in (("Apples", "Forty apple trees"), ("Pears", "Eight Conference"), ("Plums", "Six Victoria")):
        assert f"{heading}: {fact}" in answer.text, answer.text
    assert len(answer.citations) == 4
    _quotes_are_spans(answer)


@pytest.mark.parametrize(
    "question, broad",
    [
        ("Summarise the harvest history of the orchard.", True),
        ("How do I join the orchard?", True),
        ("How is a model's CBRN uplift evaluated?", True),  # how something is done: the methods listed
        ("How are the trustees chosen?", True),
        ("How many trustees are there?", False),
        ("How is the orchard funded?", True),
        ("What is the orchard?", False),
        ("How is the orchard?", False),
    ],
)
def test_which_questions_ask_for_the_whole_list(question, broad):
    from assistant.qtype import is_broad

    assert is_broad(question) is broad


GUIDE = """# Eastwick Harbour Guide

## Moorings

Visiting boats may moor at the north pontoon for up to three nights. A booking looks like this:

```
moor --pontoon north --nights 3
```

Longer stays are arranged with the harbour master. Rafting more than three boats deep is not
allowed.

## Local services

### Fuel

The fuel berth sells diesel from eight in the morning until six in the evening.

### Repairs

Using the slipway looks like this:

```
book slipway --hours 4
```

Calder Marine repairs engines and rigging at the boatyard behind the slipway.

### Provisions

A small shop beside the harbour office sells bread, milk and ice.

## Facilities

Boat owners may use three harbour facilities:

- Slipway — a concrete ramp for boats of up to eight metres, usable from half tide
- Boat crane — lifts boats of up to four tonnes onto the hard standing for repairs
- Mast crane — lifts the masts of boats on the hard standing for repairs

## Harbour office

<!-- reviewed: 2024 -->

The harbour office collects mooring fees and issues tide tables. Its staff answer on VHF
channel 12.
"""


@pytest.fixture(scope="module")
def harbour(tmp_path_factory, embedder):
    return assistant_over(tmp_path_factory.mktemp("harbour"), {"guide.md": GUIDE}, embedder)


@pytest.mark.parametrize("question", ["What are the local services?", "Summarise the local services."])
def test_a_question_naming_a_section_gets_each_subsection_by_its_heading(harbour, question):
    """The question names a section that says nothing itself: each subsection is named by its
    heading and quoted by what it says first in words (a lead-in to an example and the example
    left out), each cited."""
    answer = harbour.ask(question)
    assert not answer.abstained, answer.text
    for heading, fact in (("Fuel", "The fuel berth"), ("Repairs", "Calder Marine"), ("Provisions", "A small shop")):
        assert f"{heading}: {fact}" in answer.text, answer.text
    assert "looks like this" not in answer.text and "book slipway" not in answer.text
    assert len(answer.citations) == 3
    for c in answer.citations:
        assert GUIDE[c.start : c.end] == c.quote


def test_a_question_asking_only_about_an_item_s_key_gets_that_item(harbour):
    answer = harbour.ask("Tell me about the slipway.")
    assert not answer.abstained, answer.text
    assert answer.citations[0].quote.startswith("Slipway — a concrete ramp"), answer.text


def test_a_question_naming_one_item_of_a_list_gets_that_item(harbour):
    """'Boat crane — lifts boats …' is keyed by what the question names: the answer is that item,
    not the list it stands in."""
    answer = harbour.ask("What is the boat crane?")
    assert not answer.abstained, answer.text
    assert answer.citations[0].quote.startswith("Boat crane"), answer.text
    assert "Slipway" not in answer.text and "three harbour facilities" not in answer.text, answer.text


@pytest.mark.parametrize(
    "question, openings",
    [("What about moorings?", ["Visiting", "Longer", "Rafting"]), ("What about the harbour office?", ["The", "Its"])],
)
def test_a_question_naming_a_section_with_its_own_words_gets_them(harbour, question, openings):
    """What the section says first in words: a comment ('<!-- reviewed: 2024 -->') and an example
    (its lead-in and its code) left out."""
    answer = harbour.ask(question)
    assert not answer.abstained, answer.text
    assert [c.quote.split()[0] for c in answer.citations] == openings, answer.text


@pytest.mark.parametrize(
    "question, section, depth",
    [
        ("Summarise the academic critique.", ("Review", "Academic critique", "Bengio: minimum requirements"), 1),
        ("Summarise the academic critique of the RSP.", ("Review", "Academic critique"), 1),  # one word more
        ("What are the industry-practice observations?", ("Review", "Industry-practice observations"), 1),
        ("How do I run documentation tests?", ("Documentation tests",), 0),
        ("Give an overview of the cybersecurity thresholds.", ("Review", "Thresholds", "2. Cybersecurity"), 2),
        ("What is the cybersecurity threshold?", ("Review", "Thresholds", "2. Cybersecurity"), None),  # not broad
        ("What is the ASL-3 cybersecurity threshold for uplift?", ("Review", "2. Cybersecurity"), None),
        ("Summarise the version history.", ("Review", "Version timeline"), None),
        ("What is URLSearchParams for?", ("URL", "Class: `URLSearchParams`"), 1),  # the kind of thing named
    ],
)
def test_which_questions_ask_about_a_whole_section(question, section, depth):
    from assistant.qtype import section_asked

    assert section_asked(question, section) == depth


KIT_LICENCE = """# Gauge licence

1. You may copy the gauge logs freely.
2. You may charge a fee for copying the logs.
3. You may lend a gauge to a neighbouring harbour.
4. You may repair a gauge with parts of your own.
5. You may paint a gauge in your harbour's colours.
6. You may publish the readings of a gauge.
7. You may move a gauge to another pier.
8. You may sell the gauges in kit form, provided that you do one of the following:
    a) ship the printed manual with each kit.
    b) offer the manual as a free download.
9. You may not rename the gauges.
"""


def test_a_broad_question_about_an_item_leading_into_sub_items_gets_those(tmp_path, embedder):
    # 'How can I …?' is broad; its best unit is item 8, whose own list answers, not items 1-7 beside it
    assistant = assistant_over(tmp_path, {"kit.md": KIT_LICENCE}, embedder)
    answer = assistant.ask("How can I sell the gauges in kit form?")
    assert not answer.abstained, answer.text
    assert "ship the printed manual" in answer.text and "free download" in answer.text, answer.text
    assert "copy the gauge logs" not in answer.text, answer.text
    for c in answer.citations:
        assert KIT_LICENCE[c.start : c.end] == c.quote


def test_the_list_a_sentence_leads_to_is_found_in_the_next_chunk(tmp_path, embedder):
    """A chunk may end just after the sentence announcing a list; the list, in the next chunk, is
    still what the sentence leads to, whether or not that chunk was retrieved."""
    from assistant.records import Query
    from assistant.units import list_later

    # eight sentences before it: the chunk ends after the announcing paragraph, the list starts the next
    filler = " ".join(f"The tide gauge on pier {n} was painted green in the spring of that year." for n in range(1, 9))
    doc = (f"# Gauges\n\n## Features\n\n{filler}\n\nHere are some of the features the new gauge adds. "
           "(They could be added by hand, but they are not part of an old gauge.)\n\n"
           "- It records the tide every minute.\n- It sends its readings by wire.\n- It warns of storms.\n")
    assistant = assistant_over(tmp_path, {"gauges.md": doc}, embedder)
    _, scored, index = assistant.retrieve(Query("Summarise the features the new gauge adds."))
    unit = next(s.unit for s in scored if s.unit.text.startswith("Here are some of the features"))
    assert not any("records the tide" in u.text for u in index.arena.load([unit.chunk_id])[unit.chunk_id].units)
    items = [u.text for u in list_later(unit, index, 8, near=())]
    assert items[:3] == ["It records the tide every minute.", "It sends its readings by wire.", "It warns of storms."]


def test_a_plural_question_gets_the_list_a_short_lead_in_after_the_best_sentence_announces(tmp_path, embedder):
    # 'What tools can …?' asks for a list; the sentence about the tools is followed by 'The current
    # tools are:' and the list
    doc = ("# Gauge\n\n## Extra tools\n\nThe -t flag of the gauge command runs some tools that the harbour crew "
           "found useful. The current tools are:\n\n- tides: print the tide table.\n- storms: list the storm warnings.\n"
           "- wires: test the gauge's wires.\n")
    assistant = assistant_over(tmp_path, {"gauge.md": doc}, embedder)
    answer = assistant.ask("What tools can be run with the -t flag?")
    assert not answer.abstained, answer.text
    for tool in ("print the tide table", "list the storm warnings", "test the gauge's wires"):
        assert tool in answer.text, answer.text
    for c in answer.citations:
        assert doc[c.start : c.end] == c.quote
