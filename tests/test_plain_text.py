"""Plain-text structure (headings underlined on the next line, numbered sections and definitions
as a licence writes them), definitions asked for by their term, a broad question answered by the
list its section goes on to, and a command's option asked about with the command's name. Small documents written for this test (not an eval corpus), the
real model and an embedded Chroma."""
from __future__ import annotations

import pytest

from assistant import qtype
from conftest import assistant_over
from ingest.structure import parse_blocks

LICENCE = """Greenway Shared Code Licence
============================

1. Definitions
--------------

1.1. "Contributor"
    means each person or group who adds to the Shared Work.

1.2. "Shared Work"
    means the source files published under this licence, together
    with their documentation.

1.3. "Derived Form"
    means any form of the Shared Work other than the form in which
    it was published, such as a compiled program.

2. Termination
--------------

2.1. Your rights under this licence end automatically
if You break any of its terms, unless You put the breach right within
sixty days of learning of it.

2.2. Notices

Each copy of the Shared Work must keep the notice naming its Contributors.

3. Publishing a Derived Form
----------------------------

Whoever publishes a Derived Form must say where the source files of that Derived Form may be found.
"""

WORKSHOP = """# Riverside Workshop

## Opening hours

The workshop opens at nine on weekdays and at ten on Saturdays.

## Safety

Several rules keep people safe in the workshop. The warden checks each of them every Monday.

They apply to members and visitors alike, and to children on school visits.

- Goggles must be worn at the lathe and the grinder
- The dust extractor runs whenever a saw is in use
- First-aid kits hang beside both doors

## Membership

Membership costs twelve pounds a year.

## Keys

So, who can open the workshop on a Sunday? Only the warden holds a key that works on Sundays, and
she lends it to the treasurer in August.

## Closing up

The last member to leave in the evening must do three things:

Switch off the dust extractor at the wall. Lock the timber store. Leave the key with the warden.
"""


TOOL = """# kiln-fire(1)

## OPTIONS

### --glaze

Fire the pieces a second time at the glaze temperature, after the bisque firing has cooled.

With `kiln-fire --glaze --slow`, the kiln fire program ramps up at half the usual rate.

### --slow

Halve the rate at which the temperature rises.

## EXAMPLES

- Fire a glaze load: kiln-fire --glaze
"""


@pytest.fixture(scope="module")
def shelf(tmp_path_factory, embedder):
    files = {"licence.txt": LICENCE, "workshop.md": WORKSHOP, "kiln-fire.md": TOOL}
    return assistant_over(tmp_path_factory.mktemp("plain"), files, embedder)


def test_underlined_and_numbered_lines_of_a_plain_text_are_headings():
    headings = [(b.level, b.title) for b in parse_blocks(LICENCE, "text") if b.kind == "heading"]
    assert headings == [
        (1, "Greenway Shared Code Licence"),
        (2, "1. Definitions"),
        (3, '1.1. "Contributor"'),
        (3, '1.2. "Shared Work"'),
        (3, '1.3. "Derived Form"'),
        (2, "2. Termination"),
        (3, "2.2. Notices"),  # '2.1. Your rights … automatically' runs on into its sentence
        (2, "3. Publishing a Derived Form"),
    ]
    blocks = parse_blocks(LICENCE, "text")
    assert not any(LICENCE[b.start : b.end].strip("=-\n") == "" for b in blocks)  # no underline is a block


CENTRED = """                     HARBOUR GAUGE LICENCE
                   Version 2, 9 March 2011

  Everyone may copy this licence, but changing it is not allowed.

                            Preamble

  The gauges are shared so that every harbour can read its own tides.
The terms below say how.

                       TERMS AND CONDITIONS

  0. Definitions.

  "Gauge" means a tide gauge and its logs.

  1. Copying.

  You may copy a gauge's logs.

  2. Selling.

  You may sell a gauge, with its logs.

==============================================================================
                     END OF TERMS AND CONDITIONS

Steps to follow:

1. Read the gauge.

2. Write it down.

3. Send it in.
"""


def test_centred_lines_and_numbered_titles_of_a_plain_text_are_headings():
    headings = [(b.level, b.title) for b in parse_blocks(CENTRED, "text") if b.kind == "heading"]
    assert headings == [
        (1, "HARBOUR GAUGE LICENCE"),
        (2, "Preamble"),
        (2, "TERMS AND CONDITIONS"),
        (3, "0. Definitions."),  # numbered titles that number up, with text between them
        (3, "1. Copying."),
        (3, "2. Selling."),
        (2, "END OF TERMS AND CONDITIONS"),
    ]  # 'Version 2, …' runs on from the title; '1. Read the gauge.' … is a list, nothing between its items
    blocks = parse_blocks(CENTRED, "text")
    assert not any(set(CENTRED[b.start : b.end].strip()) == {"="} for b in blocks)  # the rule is no block
    assert [b.kind for b in blocks[-3:]] == ["item", "item", "item"]


def test_a_markdown_heading_may_be_underlined():
    text = "Intro text.\n\nInstalling\n----------\n\nRun the installer.\n\n- an item\n---\n"
    headings = [(b.level, b.title) for b in parse_blocks(text, "markdown") if b.kind == "heading"]
    assert headings == [(2, "Installing")]  # a list item over '---' is not one


@pytest.mark.parametrize(
    ("question", "subject"),
    [
        ('Under this licence, what does "Derived Form" mean?', "Derived Form"),
        ("In the licence, what is the “Shared Work” of a contributor?", "Shared Work"),
        ("What does Licensable mean?", "Licensable"),
        ("Define a dpkg trigger.", "dpkg trigger"),
        ("What is a dpkg trigger?", "dpkg trigger"),
        ("What does it mean?", ""),
        ('What does "Source" form mean in the Greenway licence?', "Source form"),  # quoted in part; a qualifier after
        ("What is a getter, as described in the chapter?", "getter"),
        ('What does the chapter mean by a "bad state"?', "bad state"),
    ],
)
def test_the_term_a_question_asks_to_be_defined(question, subject):
    assert qtype.defined_subject(question) == subject


def test_a_term_is_defined_by_the_section_it_heads(shelf):
    answer = shelf.ask('Under this licence, what does "Derived Form" mean?')
    assert not answer.abstained
    assert "other than the form in which" in answer.text
    assert answer.citations[0].section.endswith('1.3. "Derived Form"')
    assert all(LICENCE[c.start : c.end] == c.quote for c in answer.citations)


def test_a_sentence_defining_a_quoted_term_defines_it():
    assert qtype.defines('What does "License" mean?', '"License" shall mean the terms and conditions')
    assert not qtype.defines('What does "License" mean?', "This License applies to any program")
    assert qtype.defines('What does "Source" form mean in the licence?', '"Source" form shall mean the preferred form')
    assert qtype.defines('What does the chapter mean by a "bad state"?', "In this context, a bad state is when an invariant breaks")


def test_lettered_and_roman_clauses_are_list_items():
    text = (
        "You may share it, provided that you meet the following conditions:\n\n"
        "  (a) You must give recipients a copy of this licence; and\n\n"
        "  (b) You must mark the files you changed; and\n\n"
        "  c) you keep the notices.\n\n"
        "  (iv) Nothing else applies.\n"
    )
    kinds = [b.kind for b in parse_blocks(text, "text")]
    assert kinds == ["paragraph", "item", "item", "item", "item"]


def test_a_broad_question_gets_the_list_its_section_goes_on_to(shelf):
    answer = shelf.ask("List the rules that keep people safe in the workshop.")
    assert not answer.abstained
    for item in ("Goggles must be worn", "The dust extractor runs", "First-aid kits hang"):
        assert item in answer.text
    assert len(answer.citations) >= 4  # the opening sentence and each item, each cited
    assert all(WORKSHOP[c.start : c.end] == c.quote for c in answer.citations)


def test_an_option_asked_about_with_its_commands_name_is_answered_by_its_section(shelf):
    assert qtype.asks_what_it_is("What does kiln fire --glaze do?", "--glaze", ("kiln-fire(1)", "OPTIONS"))
    assert not qtype.asks_what_it_is("What does kiln fire --glaze do?", "--glaze", ("OPTIONS",))
    answer = shelf.ask("What does kiln fire --glaze do?")
    assert not answer.abstained
    assert answer.citations[0].quote.startswith("Fire the pieces a second time")


@pytest.mark.parametrize(
    ("heading", "question", "named"),
    [
        ("--target triple", "What does --target do?", True),  # the flag, not its argument's placeholder
        ("-j N, --jobs N", "What does --jobs do?", True),  # either spelling
        ("-j N, --jobs N", "What does -j do?", True),
        ("--target-dir directory", "What does --target do?", False),
        # an '=' and what follows is the flag's value, and '[default: 2]' says what it is by default
        ("--separate-recs=<level> [default: 2]", "What is the default for --separate-recs?", True),
        ("--separate-recs=<level> [default: 2]", "What is the default for --separate?", False),
        # a long flag by its name alone
        ("--threshold=<0--100> [default: 99%]", "What is the default threshold used by annotate?", True),
        ("-t <n>", "What is t used for?", False),
    ],
)
def test_a_flag_heading_is_named_by_its_flag(heading, question, named):
    assert qtype.heading_named(heading, question) is named


def test_a_quoted_term_finds_the_section_it_heads(shelf):
    assert qtype.names_term('1.1. "Contributor"', "contributors")
    answer = shelf.ask('Who counts as "Contributors" under this licence?')
    assert not answer.abstained
    assert answer.citations[0].quote.startswith("means each person or group")


def test_a_lead_in_that_no_list_follows_brings_the_sentences_it_leads_into(shelf):
    """A PDF that drew its bullets as shapes leaves a lead-in followed by plain sentences."""
    answer = shelf.ask("What must the last member to leave in the evening do?")
    assert not answer.abstained
    for step in ("Switch off the dust extractor", "Lock the timber store", "Leave the key with the warden"):
        assert step in answer.text
    assert all(WORKSHOP[c.start : c.end] == c.quote for c in answer.citations)


def test_a_question_naming_a_document_is_answered_from_it(tmp_path, embedder):
    from assistant.rank import named_documents
    from assistant.records import Query

    files = {
        "harbour-rules.md": "# Harbour club\n\nMembership under the club rules costs twelve pounds a year.\n\n"
                            "Boats must be moored by sunset.\n",
        "orchard-rules.md": "# Orchard\n\nMembership of the orchard costs five pounds a year.\n\nThe gate is locked at dusk.\n",
    }
    shelf = assistant_over(tmp_path, files, embedder)
    question = "How much does membership cost under the orchard rules?"
    index = shelf.retriever.index()
    assert named_documents(Query(question), index) == {"orchard-rules.md"}
    assert named_documents(Query("How much does membership cost?"), index) == frozenset()
    answer = shelf.ask(question)
    assert not answer.abstained
    assert answer.citations[0].source == "orchard-rules.md" and "five pounds" in answer.text


def test_a_document_named_by_its_file_name_and_version_is_no_unknown_identifier(tmp_path, embedder):
    files = {"gpl-3.txt": "GNU GENERAL PUBLIC LICENSE\nVersion 3\n\nYou may share copies of the program with anyone.\n",
             "orchard.md": "# Orchard\n\nThe gate is locked at dusk.\n"}
    shelf = assistant_over(tmp_path, files, embedder)
    from assistant.rank import named_documents
    from assistant.records import Query

    index = shelf.retriever.index()
    assert named_documents(Query("May I share copies under GPLv3?"), index) == {"gpl-3.txt"}
    assert named_documents(Query("May I share copies under version 3?"), index) == frozenset()  # no name
    answer = shelf.ask("May I share copies of the program under GPLv3?")  # the text never writes 'GPLv3'
    assert not answer.abstained and "share copies" in answer.text
    assert shelf.ask("May I share copies of the program under GPLv4?").abstained  # no file is version 4


CODES_HTML = """<html><body><h1>kilnctl</h1><h2>Diagnostics</h2>
<p>kilnctl exit codes tell a script what went wrong.</p>
<dl><dt><span>0</span></dt><dd><p>No error</p></dd><dt>1</dt><dd><p>No kiln answered</p></dd>
<dt>7</dt><dd><p>The glaze temperature was out of range</p></dd></dl>
<h2>Options</h2><dl><dt>--slow</dt><dd><p>Halve the rate at which the temperature rises, for pieces thicker than two
centimetres that would crack if heated at the usual rate of a hundred degrees an hour.</p></dd>
<dt>--glaze</dt><dd><p>Fire at the glaze temperature.</p></dd></dl></body></html>"""


def test_a_definition_list_of_short_keys_and_values_is_a_list():
    from ingest.load import html_to_text

    text = html_to_text(CODES_HTML)
    assert "- 0: No error\n\n- 1: No kiln answered\n\n- 7: The glaze temperature was out of range" in text
    assert "### --slow" in text and "### --glaze" in text  # a long definition: its term heads it


def test_a_numbered_key_is_found_by_the_code_a_question_names(tmp_path, embedder):
    shelf = assistant_over(tmp_path, {"kilnctl.html": CODES_HTML}, embedder)
    answer = shelf.ask("What does exit code 7 mean?")
    assert not answer.abstained
    assert "7: The glaze temperature was out of range" in [c.quote for c in answer.citations]
    assert "No kiln answered" not in answer.text  # the one code asked about, not the whole list


def test_a_question_the_text_asks_itself_is_answered_by_what_follows_it(shelf):
    answer = shelf.ask("Who can open the workshop on a Sunday?")
    assert not answer.abstained
    assert "Only the warden holds a key" in answer.text
    assert all(WORKSHOP[c.start : c.end] == c.quote for c in answer.citations)


def test_a_top_heading_naming_its_file_is_the_document_not_a_section():
    question = "What are the main features of Libgauge?"
    assert qtype.section_asked(question, ("Libgauge",), "manuals/other.pdf") == 0
    assert qtype.section_asked(question, ("Libgauge",), "manuals/libgauge.pdf") is None
    assert qtype.section_asked("Summarise the Features.", ("Libgauge", "Features"), "manuals/libgauge.pdf") == 1


GAUGE_LICENCES = {
    "gauge-2.0.txt": (
        "Gauge License\nVersion 2.0, March 2004\n\n"
        '   "Source" form shall mean the preferred form for making modifications to a gauge.\n\n'
        '   "Object" form shall mean any form resulting from translating a Source form.\n\n'
        "To apply the licence, attach this notice:\n\n"
        '   Licensed under the Gauge License 2.0 (the "License"); the Source form of a gauge is under it.\n'
    ),
    "tide-1.1.txt": "Tide License\nVersion 1.1\n\nYou may read the tides of any harbour.\n",
}


def test_a_document_named_by_its_file_name_and_version_gives_its_units_no_identifier_bonus(tmp_path, embedder):
    # 'the Gauge License 2.0' says which document; the unit answering is the one defining the term,
    # not the boilerplate that repeats the licence's name and version
    shelf = assistant_over(tmp_path, GAUGE_LICENCES, embedder)
    answer = shelf.ask('What does "Source" form mean in the Gauge License 2.0?')
    assert not answer.abstained, answer.text
    assert any(c.quote.startswith('"Source" form shall mean') for c in answer.citations), answer.text


@pytest.mark.parametrize(
    "question, unknown",
    [
        # a numbered paragraph or clause of the text, which the text never calls by that name
        ("What may I do under Paragraph 3?", set()),
        ("What does clause 12 allow?", set()),
        ("What does Licence-4 allow?", {"licence-4"}),  # a name with a number the corpus never writes
    ],
)
def test_a_numbered_paragraph_named_by_its_number_is_no_unknown_identifier(question, unknown):
    assert qtype.unknown_identifiers(question, set()) == unknown


HELP = """*gauge.txt*	For Gauge version 2.

1. Reading gauges	|gauge-reading|
2. Gauge logs		|gauge-logs|
3. Repairs		|gauge-repairs|

==============================================================================
1. Reading gauges					*gauge-reading*

There are two ways to read a gauge.

BY HAND							*gauge-hand*

The harbour master reads the gauge at six every morning.

BY WIRE							*gauge-wire*

The wired gauge sends its reading every hour.

==============================================================================
2. Gauge logs						*gauge-logs*

The logs are kept for a year in the gauge house.

==============================================================================
3. Repairs						*gauge-repairs*

A broken gauge is sent to the workshop.
"""


def test_a_help_file_in_capitals_and_its_contents_list():
    """Vim's help files: numbered titles after a rule, titles in capitals under them, tags at the
    right; the list of contents at the top says nothing an answer could quote."""
    from assistant.units import label_only
    from ingest.records import Unit

    def unit(text: str, kind: str = "item") -> Unit:
        return Unit("u", "c", "gauge.txt", (), kind, 0, len(text), text)

    headings = [(b.level, b.title.split("\t")[0]) for b in parse_blocks(HELP, "text") if b.kind == "heading"]
    assert headings == [(1, "1. Reading gauges"), (2, "BY HAND"), (2, "BY WIRE"), (1, "2. Gauge logs"), (1, "3. Repairs")]
    assert label_only(unit("Reading gauges\t|gauge-reading|"))
    assert label_only(unit("[Reading gauges](#reading-gauges)"))
    assert not label_only(unit("The master reads the gauge at six, as |gauge-reading| says.", "sentence"))


def test_the_words_saying_where_a_term_is_used_need_not_be_in_its_definition(tmp_path, embedder):
    """'in the Gauge License 2.0' picks the document; the sentence defining "Source" form comes first,
    before one that repeats the licence's name."""
    assert qtype.qualifier('What does "Source" form mean in the Gauge License 2.0?') == "in the Gauge License 2.0"
    assert qtype.qualifier("What is a cycle?") == ""
    # a name asked for, and a year, are what the question asks about, not where
    assert qtype.qualifier("What is the name of the French colony established in 1564?") == ""
    assert qtype.qualifier("What is the colony in 1564?") == ""
    shelf = assistant_over(tmp_path, GAUGE_LICENCES, embedder)
    answer = shelf.ask('What does "Source" form mean in the Gauge License 2.0?')
    assert answer.citations[0].quote.startswith('"Source" form shall mean'), answer.text
