"""The assistant against the real collection: citations, abstention, follow-ups, CLI."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from assistant.pipeline import NOT_IN_CORPUS, Assistant
from assistant.errors import CiteError, QuestionError
from assistant.records import Turn
from conftest import assistant_over
from assistant.settings import Settings

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def assistant(corpus_store, embedder):
    return Assistant(Settings(store=corpus_store.store), embedder)


def corpus_text(assistant, source):
    return assistant.source_text(source)


def check_citations(assistant, answer):
    markers = {int(n) for n in re.findall(r"\[(\d+)\]", answer.text)}
    assert markers == {c.n for c in answer.citations}, "phantom or orphan citation"
    for c in answer.citations:
        assert corpus_text(assistant, c.source)[c.start : c.end] == c.quote


def test_answers_with_a_cited_date(assistant):
    answer = assistant.ask("When was version 3 of the policy released?")
    assert not answer.abstained
    assert "24 February 2026" in answer.text
    assert any("24 February 2026" in c.quote for c in answer.citations)
    check_citations(assistant, answer)


@pytest.mark.parametrize(
    "question",
    [
        "What is the annual revenue of Anthropic?",
        "Which football club won the 2026 league?",
    ],
)
def test_abstains_when_the_corpus_does_not_say(assistant, question):
    answer = assistant.ask(question)
    assert answer.abstained
    assert answer.text == NOT_IN_CORPUS
    assert answer.citations == ()


@pytest.mark.parametrize(
    "question, kind",
    [
        ("When was it released?", "date"),
        ("What concrete milestone dates does the roadmap set?", "date"),
        ("In which month and year did Opus 4 first trigger ASL-3?", "date"),
        ("What happened in the years after the war?", None),  # a verb between: not asking for a date
        ("What is the date format?", None),
        ("How many reviewers are there?", "number"),
        ("When the river broke through the dyke in 1953, how did the council answer?", None),  # a scene first
        ("When Opus 4 crossed the threshold, when did Anthropic say so?", "date"),
        ("When is the 'newListener' event emitted?", "occasion"),  # a date or a condition
        ("When do cash flow problems exist?", "occasion"),
        ("Who read the tide gauges?", None),  # a role answers too ('the harbour master'), not only a name
        ("In which release was the gauge added?", "version"),
        ("What's the tool for finding out which gauge versions are supported?", None),  # 'which' opens a clause
        ("What is the maximum number of moorings a pilot may book?", "number"),
        ("What numeric code is given to the tally crew?", "number"),
        ("What is the numeric value of MAX_GAUGES?", "number"),
        ("What tide range does the gauge record?", "number"),
        ("Which harbour received the largest number of ships?", None),  # a harbour, not a number
        ("What type of number is printed on the gauge?", None),
        ("What email address should gauge faults be reported to?", "email"),
        ("What is the email address of the harbour office?", "email"),
        ("Which form asks for my email address?", None),
        ("Which environment variable sets the gauge interval?", "variable"),
        # a 'how many' inside the clause that 'what' opens is not what is asked
        ("What can be used to cap how much memory a gauge process gets?", None),
        ("Which gauges log tides, and how many readings do they keep?", "number"),
        ("If someone who broke a gauge gets a warning, how long do they have to fix it?", "duration"),
        ("I want to know how many gauges there are.", "number"),
        ("What is the default value of the 'tidelevels' option?", "value"),
        ("What is the default setting for --depth?", "value"),
    ],
)
def test_the_answer_type_a_question_asks_for(question, kind):
    from assistant import qtype

    assert qtype.expected_type(question) == kind


@pytest.mark.parametrize(
    "question, text, holds",
    [
        # the '4' of the name the question names is no score
        ("What score did Claude Opus 4 achieve?", "Claude Opus 4 triggered this threshold.", False),
        ("What score did Claude Opus 4 achieve?", "Claude Opus 4 scored 62 on it.", True),
        # a year is not a count
        ("How many reviewers were chosen?", "Reviewers were chosen in April 2026.", False),
        ("How many reviewers were chosen?", "Three reviewers were chosen in April 2026.", True),
        # a count said by what it counts, not a definition of a count
        ("How many jobs run in parallel by default?", "Defaults to the number of logical CPUs.", True),
        # 'one' counts only what is asked: not the 'one' of 'at least one listener'
        ("How many phases does the gauge loop have?", "Unless at least one listener is registered, it stops.", False),
        ("How many phases does the gauge loop have?", "The gauge loop has only one phase.", True),
        ("How many dorms house the students?", "They live in twelve residential Houses.", True),
        ("How many phases does the gauge loop have?", "The loop runs through 6 of them.", True),
        ("How many arguments can the function take?", "nargs is the number of arguments it accepts.", False),
        # a default value: a number, a literal in code, or a word a setting takes; not the option named again
        ("What is the default value of the 'tidelevels' option?", "Setting 'tidelevels' closes the log.", False),
        ("What is the default value of the 'tidelevels' option?", "The default is 1000.", True),
        ("What is the default value of the fatal option?", "`true` if failures are fatal.", True),
        ("What is the default value of the wrap option?", "Wrapping is off by default.", True),
        ("How much of the novel is set in the Bronx?", "About half of the action (1948) is set there.", True),
        ("When did RSP v2.4 come out?", "| v2.4 | August 2025 |", True),  # a date keeps its year
        # a count said as a range of names, a length without a number
        ("How many security levels does RAND define?", "The SL-1 to SL-5 definitions come from RAND.", True),
        ("How many security levels does RAND define?", "The SL-4 definition comes from RAND.", False),
        ("How long must the task run?", "Long-horizon task execution (>several days).", True),
        ("How long must the task run?", "Long-horizon task execution without supervision.", False),
        # how long: a length of time (or of text, of road), with or without a number
        ("How long does the pilot wait for the tide?", "A pilot that accepts two ships waits at the buoy.", False),
        ("How long does the pilot wait for the tide?", "Pilots wait eighty seconds, then board.", True),
        ("How long until the licence is upgraded?", "It is upgraded after a year.", True),
        ("How long may a gauge label be?", "A label holds at most 80 characters.", True),
        ("How long was the stadium closed?", "Minute Maid Park is also a retractable-roof stadium.", False),
        ("How often are the gauges read?", "The gauges are read twice a day.", True),
        ("How often are the gauges read?", "The gauges are read every 3–6 months.", True),
        ("How often are the gauges read?", "Two gauges are read by the harbour master.", False),
        # a version is asked for: a version number answers
        ("In which Node.js version did it become stable?", "Stability: 1 - Experimental", False),
        ("In which Node.js version did it become stable?", "Stable since v22.1.0.", True),
        ("Which RSP version came out in October 2025?", "| v2.5 | October 2025 | SB 53 mapping |", True),
        ("Which version of the theme was badly received?", "The 2010 version was reported to be disliked.", False),
        ("Which version was watched most?", "It drew 9.1 million viewers.", False),  # a decimal is no version
        # 'when is … emitted?' is answered by a condition too, or by a date
        ("When is the 'newListener' event emitted?", "It is emitted _before_ a listener is added.", True),
        ("When does enforcement begin?", "Enforcement begins in July 2026.", True),
        # the numbers of a link's address are no answer
        ("Which version of the gauge software is needed?", "[Gauges 19](https://example.org/v19.2.0/notes.md)", False),
        ("Which version of the gauge software is needed?", "Gauges v19.2.0 or later is needed.", True),
        # a month is a date as dates write it: 'may' and 'march' are words too
        ("When was the gauge removed?", "The gauge may need to be removed before winter.", False),
        ("When was the gauge removed?", "The gauge was removed on 3 May.", True),
        ("In which month was the gauge removed?", "Gauges march in step with the tide.", False),
        ("When is the 'newListener' event emitted?", "It passes the event name to the listener.", False),
        ("When was the event emitted?", "It is emitted before a listener is added.", False),  # past: a date
        # an amount of money may be written in words
        ("How much does membership cost?", "Membership costs five pounds a year.", True),
        ("How much does membership cost?", "Five members pay for the lamps.", False),
        # an email address, or an environment variable, is asked for: one answers
        ("What email address takes fault reports?", "Report faults to: gauges@harbour.example.org", True),
        ("What email address takes fault reports?", "Faults are reported by email to the office.", False),
        ("Which environment variable sets the interval?", "It may also be set with GAUGE_INTERVAL.", True),
        ("Which environment variable sets the interval?", "Set the PATH environment variable first.", True),
        ("Which environment variable sets the interval?", "It may also be set with the gauge.interval config value.", False),
    ],
)
def test_what_counts_as_the_answer_type(question, text, holds):
    from assistant import qtype

    kind = qtype.expected_type(question)
    assert qtype.satisfies(kind, text, qtype.identifiers(question), qtype.counted(question)) is holds


@pytest.mark.parametrize(
    "question, phrases",
    [
        ("Which version introduced the “If-Then” commitment structure?", {"if-then"}),
        ("How does `path.join()` work?", {"path.join()"}),
        ("How much of 'City Boy: The Adventures' is set in the Bronx?", {"city boy: the adventures"}),
        ("What's Anthropic's view? It's odd", set()),  # apostrophes are not quotes
    ],
)
def test_quoted_phrases_of_a_question(question, phrases):
    from assistant import qtype

    assert qtype.quoted(question) == phrases


@pytest.mark.parametrize(
    "acronym, text, spelt",
    [
        ("MATS", "MATS (ML Alignment & Theory Scholars)", True),
        ("METR", "Model Evaluation & Threat Research (METR) ran the tests.", True),
        ("GPAI", "The general-purpose AI (GPAI) rules", True),  # 'AI' gives both its letters
        ("MATS", "MATS — alignment research cohort", False),
        ("OTA", "the OTA (signed in 2025) was renewed", False),
    ],
)
def test_an_acronym_spelt_out_beside_it(acronym, text, spelt):
    from assistant import qtype

    assert qtype.spells_out(acronym, text) is spelt


@pytest.mark.parametrize(
    "question, acronym",
    [
        ("What does the acronym MATS stand for?", "MATS"),
        ("What is CBRN short for?", "CBRN"),
        ("What does Bengio mean?", None),  # one capital: a name, not an acronym
        ("What does it mean?", None),
    ],
)
def test_the_acronym_a_question_asks_about(question, acronym):
    from assistant import qtype

    assert qtype.acronym_asked(question) == acronym


@pytest.mark.parametrize(
    "question", ["What does the acronym MATS stand for among the external reviewers?", "What does MATS stand for?"]
)
def test_what_an_acronym_stands_for_is_answered_where_it_is_spelt_out(assistant, question):
    # the corpus also has 'MATS — alignment research cohort', closer to the question's words; the
    # spelt-out unit counts in confidence as a named identifier does (the short question abstained)
    answer = assistant.ask(question)
    assert not answer.abstained and "ML Alignment & Theory Scholars" in answer.citations[0].quote


def test_an_acronym_spelt_out_in_a_heading_is_answered_under_it(assistant):
    # '### 1. CBRN (Chemical, Biological, Radiological, Nuclear)': no sentence spells it out
    answer = assistant.ask("What is CBRN short for?")
    assert not answer.abstained, answer.text
    assert answer.text.startswith("1. CBRN (Chemical, Biological, Radiological, Nuclear): "), answer.text
    check_citations(assistant, answer)


def test_a_quoted_phrase_finds_the_unit_that_holds_it(assistant):
    # 'if' and 'then' are stopwords: only the quoted phrase points at the v2.0 row
    answer = assistant.ask("Which RSP version introduced the “If-Then” commitment structure?")
    assert not answer.abstained and "v2.0" in answer.text
    assert "If-Then" in answer.citations[0].quote


def test_a_row_naming_the_asked_identifier_is_answered(assistant):
    # the row shares few words with the question; naming v2.4 is what makes it the answer
    answer = assistant.ask("When did RSP v2.4 come out?")
    assert not answer.abstained and "August 2025" in answer.text
    check_citations(assistant, answer)


KEYS_DOC = """# Terminal keys

## Keybindings

The line editor understands the keys below.

<table>
  <tr>
    <th>Keybindings</th>
    <th>Description</th>
    <th>Notes</th>
  </tr>
  <tr>
    <td><kbd>Ctrl</kbd>+<kbd>-</kbd></td>
    <td>Undo previous change</td>
    <td>Any keystroke that emits key code 0x1F will do this action in many terminals.</td>
  </tr>
  <tr>
    <td><kbd>Ctrl</kbd>+<kbd>U</kbd></td>
    <td>Delete from the current position to the line start</td>
    <td></td>
  </tr>
  <tr>
    <td><kbd>Ctrl</kbd>+<kbd>L</kbd></td>
    <td>Clear screen</td>
    <td></td>
  </tr>
</table>
"""


def test_a_row_of_an_html_table_is_found_by_its_key_and_shown_without_tags(tmp_path, embedder):
    assistant = assistant_over(tmp_path, {"keys.md": KEYS_DOC}, embedder)
    answer = assistant.ask("What does the Ctrl+U key binding do in a terminal?")
    assert not answer.abstained, answer.text
    assert answer.text.startswith("Keybindings: Ctrl+U — Description: Delete from the current position to the line start")
    assert "<td>" not in answer.text and "Notes:" not in answer.text.split("[1]")[0]  # no tags, no empty cell
    first = answer.citations[0]
    assert KEYS_DOC[first.start : first.end] == first.quote and first.quote.startswith("<tr>")


STYLES_DOC = """# Console colours

## Default styles

Values are printed in colour when the terminal supports it. By default the console applies a style
to each kind of value, and a null value is printed without quotes. The styles may be
changed through the settings object before anything is printed.

The default styles and their colours are:

* `number`: `yellow`
* `boolean`: `yellow`
* `string`: `green`
* `null`: `bold`
* `undefined`: `grey`
* `date`: `magenta`
"""


def test_a_list_item_keyed_in_code_is_found_by_its_key(tmp_path, embedder):
    """'`null`: `bold`' pairs a key with its value as a table row would: a question naming the key
    word for word is answered by that item too (without the key, a sentence nearer in words alone)."""
    assistant = assistant_over(tmp_path, {"styles.md": STYLES_DOC}, embedder)
    answer = assistant.ask("Which style does the console apply to null by default?")
    assert not answer.abstained, answer.text
    assert "`null`: `bold`" in [c.quote for c in answer.citations], answer.text


HARBOUR_DOC = """# The old harbour

## Its builders

Margarethe Oosterhuis drew the first plans of the harbour in 1731. She persuaded the town
council to pay for a stone breakwater and hired masons from Antwerp. The breakwater still stands.

## Trade

Grain and timber were the main cargoes until the railway arrived.
"""


def test_a_sentence_that_points_back_comes_with_the_one_it_points_to(tmp_path, embedder):
    assistant = assistant_over(tmp_path, {"harbour.md": HARBOUR_DOC}, embedder)
    answer = assistant.ask("Who persuaded the town council to pay for the breakwater?")
    assert not answer.abstained, answer.text
    # 'She persuaded …' alone does not say who: the sentence before it, cited apart, does
    assert answer.text.startswith("Margarethe Oosterhuis drew the first plans of the harbour in 1731. [1] She persuaded")
    assert [c.quote.split()[0] for c in answer.citations[:2]] == ["Margarethe", "She"]
    for c in answer.citations:
        assert HARBOUR_DOC[c.start : c.end] == c.quote


THEME_DOC = """# The theme tune

## Arrangements

The theme was first recorded in 1963 on tape loops. The 2010 version of the theme was disliked by some
viewers for its brass section. The 1980 arrangement used synthesisers.
"""


def test_a_version_may_be_a_year_when_no_candidate_holds_a_version_number(tmp_path, embedder):
    assistant = assistant_over(tmp_path, {"theme.md": THEME_DOC}, embedder)
    answer = assistant.ask("Which version of the theme was disliked by some viewers?")
    assert not answer.abstained, answer.text
    assert "The 2010 version of the theme was disliked" in answer.citations[0].quote


DYKE_DOC = """# The river town

## The flood

In March 1953 a spring tide drove the river through the western dyke of the old town. The council
answered by raising every dyke of the town by two metres.

## The market

The Saturday market has been held on the square since 1602.
"""


def test_the_next_sentence_comes_along_when_it_holds_what_the_question_asks(tmp_path, embedder):
    """The sentence naming the flood matches most of the question; the one after it holds what the
    question asks ('how did the council answer'): both are quoted, each cited."""
    assistant = assistant_over(tmp_path, {"town.md": DYKE_DOC}, embedder)
    answer = assistant.ask("How did the council answer when the spring tide drove the river through the western dyke in 1953?")
    assert not answer.abstained, answer.text
    assert "raising every dyke of the town by two metres" in answer.text, answer.text
    assert [c.quote.split()[0] for c in answer.citations[:2]] == ["In", "The"]
    for c in answer.citations:
        assert DYKE_DOC[c.start : c.end] == c.quote


ESSAYS_DOC = """# The harbour plan

## Criticism

Ingrid Solberg's main argument against the harbour plan is that the new breakwater removes the
natural flushing of the bay.

Her essays on the harbour plan conclude that silt then builds up until the channel closes within a decade.

## Approval

The harbour plan was approved by the port authority in 2019, after the essays of Ingrid Solberg appeared.
"""


def test_a_follow_up_that_would_repeat_the_answer_gets_what_comes_next(tmp_path, embedder):
    """'What does she say that leads to?' asks for more than the last answer: the sentence that
    follows it in the document, though another unit scores a little higher on the conversation.
    (The threshold is lowered: a three-sentence corpus gives small idf weights.)"""
    from dataclasses import replace

    base = assistant_over(tmp_path, {"harbour.md": ESSAYS_DOC}, embedder)
    assistant = Assistant(replace(base.settings, abstain_threshold=0.35), embedder=embedder)
    q1 = "What is Ingrid Solberg's main argument against the harbour plan?"
    a1 = assistant.ask(q1)
    assert "natural flushing" in a1.text and "silt" not in a1.text, a1.text
    a2 = assistant.ask("What does she say that leads to?", [(q1, a1.text)])
    assert "silt then builds up until the channel closes" in a2.text, a2.text
    assert "approved by the port authority" not in a2.text
    for c in a2.citations:
        assert ESSAYS_DOC[c.start : c.end] == c.quote


WIDGET_DOC = """# Widget API

## `widget.spin([speed])`

<!-- YAML
added: v2.1.0
-->

Turns the rotor of the widget until the rotor is stopped by hand.

The speed that `widget.spin()` uses is the one `widget.setSpeed()` stored; `widget.spin()` reads it
each time `widget.spin()` starts.

## `widget.setSpeed(rpm)`

Stores the speed, in revolutions per minute, that `widget.spin()` uses.
"""


def test_what_a_named_function_does_is_the_first_sentence_of_its_section(tmp_path, embedder):
    """Reference documentation says what a thing does first: 'What does widget.spin() do?' is
    answered by the first sentence under its heading, not by the sentence naming it most often."""
    assistant = assistant_over(tmp_path, {"widget.md": WIDGET_DOC}, embedder)
    answer = assistant.ask("What does widget.spin() do?")
    assert not answer.abstained, answer.text
    assert answer.text.startswith("`widget.spin([speed])`: Turns the rotor of the widget"), answer.text
    added = assistant.ask("In which version was widget.spin() added?")
    assert not added.abstained, added.text
    assert any(c.quote == "<!-- YAML\nadded: v2.1.0\n-->" for c in added.citations), added.text
    for c in answer.citations + added.citations:
        assert WIDGET_DOC[c.start : c.end] == c.quote


FLAGS_DOC = """# Tool flags

## --crate-name: controlling the name of the crate

Using this flag looks like this:

```
$ tool src/lib.rs --crate-name mycrate
```

By default, the tool assumes that the name of your crate is the name of its file. --crate-name lets you
override this assumption with any name you choose.

## --test-args: pass options to the test runner

This flag passes options to the test runner when running tests. For more, see the chapter on tests.

## broken_page_links

This lint warns by default. This lint detects when a link between two pages fails to resolve.

## missing_examples

This lint is allowed by default. It detects public items without an example.
"""


@pytest.mark.parametrize(
    "question, wanted, unwanted",
    [
        # the opening paragraph under the heading, not the lead-in to its example
        ("What does --crate-name do?", "--crate-name lets you\noverride this assumption", "Using this flag"),
        # a sentence that only points elsewhere is no answer
        ("What does --test-args do?", "passes options to the test runner", "For more, see"),
        # 'broken_page_links' asks about links between pages: the next sentence says what it detects
        ("What does the broken_page_links lint warn about?", "fails to resolve", None),
        # 'This lint …' opening its section says which lint through the heading
        ("Which lint is allowed by default?", "missing_examples: This lint is allowed by default.", None),
    ],
)
def test_reference_sections_answer_what_a_flag_or_lint_does(tmp_path, embedder, question, wanted, unwanted):
    assistant = assistant_over(tmp_path, {"flags.md": FLAGS_DOC}, embedder)
    answer = assistant.ask(question)
    assert not answer.abstained, answer.text
    assert wanted in answer.text, answer.text
    assert unwanted is None or unwanted not in answer.text, answer.text
    for c in answer.citations:
        assert FLAGS_DOC[c.start : c.end] == c.quote


@pytest.mark.parametrize(
    "question, heading, expected",
    [
        ("What does rl.prompt() do?", "`rl.prompt([preserveCursor])`", True),
        ("What is the --crate-name flag for?", "`--crate-name`: controlling the name", True),
        ("What does emitter.emit() return?", "`emitter.emit(eventName[, ...args])`", False),
        ("What does path.extname() return for a path with no dot?", "`path.extname(path)`", False),
        ("What does rl.prompt() do?", "`rl.close()`", False),
        ("What does the orchard do?", "The orchard", False),  # not a named thing
        ("What is URLSearchParams for?", "Class: `URLSearchParams`", True),  # the kind of thing named
        ("When is the 'newListener' event emitted?", "Event: `'newListener'`", False),
    ],
)
def test_a_question_asking_only_what_a_named_thing_is(question, heading, expected):
    from assistant import qtype

    assert qtype.asks_what_it_is(question, heading) is expected


def test_every_answer_cites_exact_spans(assistant):
    for q in [
        "Which Claude models are ASL-2?",
        "What did Bengio argue?",
        "Who are the external reviewers?",
        "Does DeepMind have a pause commitment?",
        "What does ASL-3 require for weight protection?",
    ]:
        answer = assistant.ask(q)
        check_citations(assistant, answer)
        for c in answer.citations:
            assert c.section is not None and c.chunk_id and c.end > c.start


def test_table_rows_keep_their_header(assistant):
    answer = assistant.ask("Does Google DeepMind's framework have a pause commitment?")
    assert "No explicit pause" in answer.text
    row = next(c for c in answer.citations if "No explicit pause" in c.quote)
    assert row.header.startswith("| Dimension")


def test_follow_up_uses_the_conversation(assistant):
    first = assistant.ask("When was RSP v3 released?")
    history = [Turn("user", "When was RSP v3 released?"), Turn("assistant", first.text)]
    follow = assistant.ask("What did it rescind?", history)
    assert "pause" in follow.text.lower()
    alone = assistant.ask("What did it rescind?")
    assert alone.query != follow.query  # the history changed what was searched for
    check_citations(assistant, follow)


def test_follow_up_what_about(assistant):
    q1 = "Does OpenAI's Preparedness Framework have a pause commitment?"
    a1 = assistant.ask(q1)
    a2 = assistant.ask("What about DeepMind's?", [Turn("user", q1), Turn("assistant", a1.text)])
    assert "No explicit pause" in a2.text


def test_a_follow_up_is_not_told_only_what_it_was_just_told(assistant):
    first = assistant.ask("Who is Zvi Mowshowitz?")
    answer = assistant.ask("What does he criticise?", [("Who is Zvi Mowshowitz?", first.text)])
    assert not first.abstained and not answer.abstained
    assert answer.text != first.text
    assert {c.quote for c in answer.citations} - {c.quote for c in first.citations}  # something new, cited
    check_citations(assistant, answer)


def test_follow_up_query_carries_the_last_answer_without_markers():
    """'that law' may be named only in the previous answer; an abstention adds nothing."""
    from assistant.conversation import resolve
    from assistant.records import NOT_IN_CORPUS

    q1 = "What did Anthropic publish in October 2025?"
    said = "October 2025: SB 53 Frontier Compliance Framework published [1]"
    q = resolve("When did that law take effect?", [Turn("user", q1), Turn("assistant", said)])
    assert q.focus == "When did that law take effect?"
    assert q1 in q.context and "SB 53 Frontier Compliance Framework published" in q.context and "[1]" not in q.context
    assert resolve("When did that law take effect?", [Turn("user", q1), Turn("assistant", NOT_IN_CORPUS)]).context == q1
    assert resolve("What is ASL-3?", [Turn("user", q1), Turn("assistant", said)]).context == ""  # not a follow-up
    # two content words and no identifier: too short to stand alone when they leave out what they
    # react to, or share a word with the last turn; not when they change the subject
    history = [Turn("user", q1), Turn("assistant", said)]
    assert q1 in resolve("How did Anthropic respond?", history).context
    assert q1 in resolve("What does the framework contain?", history).context
    assert resolve("What is the capital of France?", history).context == ""


def test_short_follow_up_with_a_word_the_corpus_lacks_is_answered(assistant):
    """'In what book?' names one word the corpus never uses; judged with the turn it leans on,
    that word is one of several, so the answer is not suppressed as off-corpus."""
    from assistant.rank import unknown_share
    from assistant.conversation import Query

    q1 = "Which researcher says AI should be constrained by default?"
    stats = assistant.retriever.index().stats
    assert unknown_share(Query("In what book?"), stats) == 1.0
    assert unknown_share(Query("In what book?", q1), stats) < 0.5
    a1 = assistant.ask(q1)
    a2 = assistant.ask("In what book?", [Turn("user", q1), Turn("assistant", a1.text)])
    assert not a2.abstained and "Human Compatible" in a2.text
    check_citations(assistant, a2)


@pytest.mark.parametrize(
    "question, fragment",
    [
        ("", "empty"),
        ("   \n\t ", "empty"),
        ("?!?... ---", "no words"),
        ("x" * 20_000, "limit is 2,000"),
    ],
)
def test_bad_questions_are_refused_in_one_line(assistant, question, fragment):
    with pytest.raises(QuestionError) as err:
        assistant.ask(question)
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_control_characters_and_broken_unicode_are_cleaned(assistant):
    answer = assistant.ask("When was\x00 RSP v3\x1b released?\ud800")
    assert "24 February 2026" in answer.text


def test_cite_is_confined_to_the_corpus(assistant):
    from assistant.cite import passage

    for bad in ["../../etc/passwd", "/etc/passwd", "corpus/../../etc/passwd"]:
        with pytest.raises(CiteError):
            passage(assistant.settings.corpus_dirs, bad, 0, 5)


def run_cli(*args, input=None, env=None):
    return subprocess.run(
        [sys.executable, "-m", "assistant", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        input=input,
        timeout=120,
        env=env,
    )


def test_cli_ask_json(corpus_store):
    out = run_cli("ask", "When was version 3 of the policy released?", "--json", "--store", str(corpus_store.store.path))
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert {"answer", "abstained", "citations", "related", "notice", "backend", "threshold", "threshold_source"} <= set(data)
    assert data["abstained"] is False
    assert any("24 February 2026" in c["quote"] for c in data["citations"])
    assert {"n", "chunk_id", "source", "section", "start", "end", "quote"} <= set(data["citations"][0])
    assert data["threshold_source"].startswith("packaged calibration"), data["threshold_source"]


def test_cli_flags_win_over_the_environment_and_a_bad_backend_lists_the_choices(corpus_store):
    import os

    env = {**os.environ, "RAG_CHROMA_HOST": "127.0.0.1", "RAG_CHROMA_PORT": "9", "RAG_ABSTAIN_THRESHOLD": "0.99"}
    q = "When was version 3 of the policy released?"
    out = run_cli("ask", q, "--json", "--store", str(corpus_store.store.path), "--abstain-threshold", "0.1", env=env)
    assert out.returncode == 0, out.stderr  # --store means the embedded folder, whatever RAG_CHROMA_HOST says
    data = json.loads(out.stdout)
    assert data["threshold"] == 0.1 and data["threshold_source"] == "--abstain-threshold"
    bad = run_cli("ask", q, "--store", str(corpus_store.store.path), env={**os.environ, "RAG_BACKEND": "extractiv"})
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "unknown backend 'extractiv'" in bad.stderr and "extractive, openai" in bad.stderr


def test_cli_batch_round_trips_a_two_turn_history(corpus_store, tmp_path):
    src = tmp_path / "in.jsonl"
    rows = [
        {"id": "a", "question": "When was RSP v3 released?"},
        {
            "id": "b",
            "question": "What did it rescind?",
            "history": [
                {"role": "user", "content": "When was RSP v3 released?"},
                {"role": "assistant", "content": "RSP v3, released 24 February 2026 [1]"},
            ],
        },
    ]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out_path = tmp_path / "out.jsonl"
    out = run_cli("batch", str(src), str(out_path), "--store", str(corpus_store.store.path))
    assert out.returncode == 0, out.stderr
    got = [json.loads(line) for line in out_path.read_text().splitlines()]
    assert [g["id"] for g in got] == ["a", "b"]
    assert got[1]["history"] == rows[1]["history"]
    assert "pause" in got[1]["answer"].lower()
    assert all({"answer", "abstained", "citations"} <= set(g) for g in got)


def test_cli_cite_and_refusal(corpus_store):
    store = str(corpus_store.store.path)
    ok = run_cli("cite", "anthropic-rsp-review.md:20-60", "--store", store)
    assert ok.returncode == 0 and ">>>" in ok.stdout
    bad = run_cli("cite", "../../etc/passwd:0-10", "--store", store)
    assert bad.returncode == 2
    assert "outside the corpus" in bad.stderr
    assert "root:" not in bad.stdout + bad.stderr


def test_cli_missing_store_names_the_fix(tmp_path):
    out = run_cli("ask", "anything", "--store", str(tmp_path / "nope"))
    assert out.returncode == 2
    assert "python -m ingest" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_server_mode_ingest_question_and_follow_up(chroma_server, embedder, tmp_path):
    """Scale-out path: a real `chroma run`, ingest through HttpClient, then ask and follow up."""
    from conftest import CORPUS

    from ingest.pipeline import run_ingest
    from ingest.settings import IngestSettings, StoreSettings

    host, port, _ = chroma_server
    store = StoreSettings(host=host, port=port)
    summary = run_ingest(IngestSettings(store=store, corpus=(CORPUS,), progress=False), embedder, log=lambda s: None)
    assert summary.added > 0
    assistant = Assistant(Settings(store=store), embedder)
    first = assistant.ask("When was RSP v3 released?")
    assert "24 February 2026" in first.text
    follow = assistant.ask(
        "What did it rescind?", [Turn("user", "When was RSP v3 released?"), Turn("assistant", first.text)]
    )
    assert "pause" in follow.text.lower()
    check_citations(assistant, follow)
    # the subsections a lead-in leads into are found by a metadata query on the server too
    listed = assistant.ask("Across how many capability categories does RSP v3 set thresholds?")
    assert "four capability categories" in listed.text and "2. Cybersecurity:" in listed.text, listed.text
    check_citations(assistant, listed)


def test_the_verify_stage_catches_phantom_markers_and_wrong_quotes_but_not_quoted_code():
    from types import SimpleNamespace

    from assistant.records import Answer, Citation
    from assistant.verify import citation_faults
    from ingest.records import Chunk

    chunk = Chunk("c1", "a.md", ("A",), 100, 140, "Call emitter.listeners[0] to get the first.")
    index = SimpleNamespace(chunks={"c1": chunk})
    good = Citation(1, "c1", "a.md", "A", 100, 143, chunk.text)
    assert citation_faults(Answer(f"{chunk.text} [1]", False, (good,)), index) == []
    phantom = citation_faults(Answer(f"{chunk.text} [1] More. [2]", False, (good,)), index)
    assert phantom == ["[2] names no listed citation"]
    moved = Citation(1, "c1", "a.md", "A", 101, 144, chunk.text)
    assert citation_faults(Answer(f"{chunk.text} [1]", False, (moved,)), index) == ["citation 1's quote is not a.md[101:144]"]
    assert citation_faults(Answer("Nothing cited.", False, (good,)), index) == ["citation 1 is never referred to"]


@pytest.mark.parametrize(
    "text, kind, says_nothing",
    [
        ("Shared MIME-info Database X Desktop Group (http://www.freedesktop.org)", "sentence", True),  # a title page
        ("Thomas Leonard", "sentence", True),
        ("plugdev", "sentence", True),  # a bare term
        ("[Node.js 19](https://github.com/nodejs/node/blob/v19.x/BUILDING.md)", "item", True),  # a bare link
        ("The tide tables are at <https://example.org/gauges>.", "sentence", False),
        ("Port 8080", "sentence", False),
        ("Evaluation methods:", "sentence", True),
        ("For more, see the chapter on documentation tests.", "sentence", True),
        ("Stability: 2 - Stable", "sentence", False),  # a key and its value
        ("This is version 0.21 of the specification.", "sentence", False),
        ("The RSP was the first of its kind", "sentence", False),
        ("Frontier Safety Roadmap", "item", False),  # a list item names one of a list
    ],
)
def test_which_units_say_nothing_by_themselves(text, kind, says_nothing):
    from assistant.units import label_only
    from ingest.records import Unit

    unit = Unit("u", "c", "doc.md", ("Doc",), kind, 0, len(text), text)
    assert label_only(unit) is says_nothing


DEBUG_DOC = """# Logging

## Debug output

Calling the debug logger prints the section name, the process id and the message:

```
FOO 3245: hello from foo [123]
```

The section name is given in capitals.
"""


def test_a_quote_that_holds_a_marker_is_not_taken_for_a_citation(tmp_path, embedder):
    """'[123]' inside a quoted code sample is part of the quote: the answer passes the verify stage
    instead of being withheld as citing a source it does not list."""
    assistant = assistant_over(tmp_path, {"log.md": DEBUG_DOC}, embedder)
    answer = assistant.ask("What does the debug logger print?")
    assert not answer.abstained and not answer.notice, answer.text
    assert "hello from foo [123] [" in answer.text, answer.text
    assert any(c.quote == "FOO 3245: hello from foo [123]" for c in answer.citations), answer.citations


CREWS_PAGE = """<html><head><title>Harbour crews</title></head><body>
<div class="header"><p>Next: <a href="moorings.html" accesskey="n" rel="next">Moorings</a>,
Up: <a href="index.html" accesskey="u" rel="up">Harbour guide</a> [<a href="ix.html" rel="index">Index</a>]</p></div>
<h2>3 Harbour crews</h2>
<p>Each crew of the Zebulon harbour has its own duties and its own shed on the quay.</p>
<ul class="section-toc"><li><a href="#pilots">Pilots</a></li><li><a href="#tally">Tally clerks</a></li>
<li><a href="#gaugers">Gaugers</a></li></ul>
<dl>
<dt>pilots</dt><dd><p>Members of this crew steer visiting ships through the channel at high tide.
They board each ship at the outer buoy.</p></dd>
<dt>tally</dt><dd><p>Members of this crew count every crate that is landed and sign the cargo book.
Only the harbour master may correct the book afterwards.</p></dd>
<dt>gaugers</dt><dd><p>Members of this crew read the tide gauges twice a day and post the levels on the quay.</p></dd>
</dl>
</body></html>
"""


def test_a_definition_list_term_is_the_heading_of_its_definition(tmp_path, embedder):
    """A <dt> names what its <dd> says (groups, options, glossary terms): asked about the term, the
    answer is the definition, never the bare term; the page's next/up bar and its table of contents
    are navigation, not text."""
    assistant = assistant_over(tmp_path, {"crews.html": CREWS_PAGE}, embedder)
    answer = assistant.ask("What does the tally crew do?")
    assert not answer.abstained, answer.text
    assert "count every crate" in answer.text, answer.text
    assert all(c.section.endswith("tally") for c in answer.citations[:1])
    text = assistant.source_text("crews.html")
    assert "Next:" not in text and "Tally clerks" not in text
    assert "\n### pilots\n" in text  # one level below the page's heading



TIDE_MANUAL = """# Tide2 manual

The main features of this program are:

- Reading every gauge of the harbour twice a day.
- Warning the harbour master before a spring tide.

## Installing

Copy the Tide2 binary into /usr/local/bin. Questions about Tide2 go to the harbour office. Gauge7 is read first.
"""


def test_a_name_the_file_bears_earns_no_identifier_bonus(tmp_path, embedder):
    """'Tide2' is what the whole of tide2.md is about: a unit that repeats the name is no nearer the
    question than the list the question asks for ('What are the main features of Libtasn1?' of
    libtasn1.pdf had been answered by its bug-report address). A name the file does not bear
    ('Gauge7') keeps its bonus."""
    from assistant.records import Query

    assistant = assistant_over(tmp_path, {"tide2.md": TIDE_MANUAL}, embedder)
    _, scored, _ = assistant.retrieve(Query("What are the main features of Tide2?"))
    assert {s.unit.text: s.named for s in scored}["Questions about Tide2 go to the harbour office."] == 0.0
    _, scored, _ = assistant.retrieve(Query("Which gauge is read first, Gauge7?"))
    assert {s.unit.text: s.named for s in scored}["Gauge7 is read first."] > 0.0


QUAY_DOC = """# The quay

## Crews

There are three crews on the quay, each with a shed of its own near the harbour wall.

1. Pilots steer visiting ships through the channel.
2. Tally clerks count every crate that is landed.
3. Gaugers read the tide gauges twice a day.

The harbour master assigns each crew its berths every Monday morning.
"""


def test_a_question_asking_for_several_things_gets_the_list_after_the_sentence_that_announces_it(tmp_path, embedder):
    """'There are three crews on the quay …' ends in a full stop, not ':', yet the list it is
    followed by is what 'What are the crews on the quay?' asks for."""
    assistant = assistant_over(tmp_path, {"quay.md": QUAY_DOC}, embedder)
    answer = assistant.ask("What are the crews on the quay?")
    assert not answer.abstained, answer.text
    assert all(w in answer.text for w in ("Pilots steer", "Tally clerks count", "Gaugers read")), answer.text
    assert "Monday" not in answer.text


GAUGE_SPEC = """# Gauge names

GAUGE_NAME_MAX is the maximum number of characters allowed for a gauge identifier.
A gauge identifier starts with a letter and holds letters, digits and dashes.
"""

TRIGGER_SPEC = """# Tide triggers

A tide trigger records an event caused by one gauge that another gauge is interested in.
Each trigger has a name, and the harbour office keeps the list of trigger names.
Triggers are processed once a day, after the evening reading.
"""


def test_an_answer_from_a_document_that_never_uses_a_word_of_the_question_is_doubted(tmp_path, embedder):
    """In a folder of documents, a question about triggers is not answered from the one document
    that never says 'trigger', though that document has a sentence on a maximum length."""
    assistant = assistant_over(tmp_path, {"gauges.md": GAUGE_SPEC, "triggers.md": TRIGGER_SPEC}, embedder)
    answer = assistant.ask("What is the maximum length allowed for a trigger name?")
    assert answer.abstained, answer.text
    answer = assistant.ask("Which constant gives the maximum number of characters allowed for a gauge identifier?")
    assert not answer.abstained and "GAUGE_NAME_MAX" in answer.text, answer.text


def _trigger_manual() -> str:
    intro = ("# Tide triggers\n\n## Introduction\n\nThis note describes the harbour office's scheme for gauge readings"
             " and the crews that act on them.\nA tide trigger is a rule that lets one gauge reading wake the crew that"
             " cares about it, later and in one batch.\nThe scheme was adopted after the flood of the old quay, and the"
             " office keeps its records in the ledger room.\n\n")
    topics = ["Pilots", "Tally clerks", "Gaugers", "Moorings", "Night shifts", "Storms", "Records", "Audits", "Dredgers",
              "Ferries", "Buoys", "Lighthouse", "Customs", "Fishing fleet", "Slipway", "Cranes", "Warehouses",
              "Fuel dock", "Ice", "Fog", "Visitors", "Tugs", "Lock gates", "Sluices", "Beacons", "Radio", "Ledger",
              "Winter", "Summer", "Festivals"]
    return intro + "\n".join(
        f"## {t}\n\nThe {t.lower()} tide trigger fires when the gauge passes its mark, and the tide trigger wakes the "
        f"{t.lower()} crew. Each tide trigger of the {t.lower()} is checked by the harbour master every morning. A tide "
        f"trigger may be paused while the {t.lower()} crew is at sea; a paused tide trigger is listed by the door.\n"
        for t in topics
    )


def test_what_is_x_is_answered_where_the_document_first_says_what_x_is(tmp_path, embedder):
    """Thirty sections repeat 'tide trigger' more often than the introduction that defines it, so
    neither words nor meaning retrieve the definition; a document says what a thing is where it
    first speaks of it, and 'A tide trigger is …' is the form of an answer to 'What is a tide
    trigger?'."""
    assistant = assistant_over(tmp_path, {"triggers.md": _trigger_manual()}, embedder)
    answer = assistant.ask("What is a tide trigger?")
    assert not answer.abstained, answer.text
    assert answer.text.startswith("A tide trigger is a rule that lets one gauge reading wake the crew"), answer.text


@pytest.mark.parametrize(
    "question, text, defines",
    [
        ("What is a tide trigger?", "A tide trigger is a rule that wakes a crew.", True),
        ("What is pybuild?", "Pybuild is a Debian Python specific build system.", True),
        ("What are frets?", "Frets (thin metal strips) are set into the neck.", True),
        ("What is a tide trigger?", "The storms tide trigger fires at the mark.", False),
        ("What is the default tab size of readline?", "The default is 8.", False),
        ("How is a tide trigger paused?", "A tide trigger is paused by the office.", False),  # not a definition asked
        # the term given as the name of what the sentence describes
        ("What is exception safety?", "Being ready for unwinding is often referred to as exception safety.", True),
        ("What is a move?", "This is known as a move, not a shallow copy.", True),
        ("What is a move?", "This is known as a movement.", False),
    ],
)
def test_which_sentences_define_what_a_question_asks_about(question, text, defines):
    from assistant import qtype

    assert qtype.defines(question, text) is defines


GOES_ON_DOC = """# Catalogs

The tool reads catalogs to resolve external entities before it transforms a document.
By default, the tool looks for the catalog named in the CATALOG_FILES variable. If that is not set, it
uses /etc/xml/catalog. Catalog lookups are cached for the length of one run.
"""


def test_a_sentence_that_goes_on_from_the_answer_comes_along(tmp_path, embedder):
    # 'If that is not set, …' says what the best sentence leaves open, though it repeats no question word
    assistant = assistant_over(tmp_path, {"catalogs.md": GOES_ON_DOC}, embedder)
    answer = assistant.ask("Where does the tool look for the catalog by default?")
    assert not answer.abstained, answer.text
    assert "CATALOG_FILES variable" in answer.text and "/etc/xml/catalog" in answer.text, answer.text
    assert "cached" not in answer.text, answer.text
    for c in answer.citations:
        assert GOES_ON_DOC[c.start : c.end] == c.quote


CLOSURE_DOC = """# The gauge API

## Callbacks

The gauge library also provides a way to write a generic handler that can accept and decode any reading.
This can be useful when writing a logger, or to wrap other gauges.

This facility is called the callback API. Callbacks are not supported on every gauge.
"""


def test_a_sentence_opening_its_paragraph_by_pointing_back_comes_with_what_it_points_to(tmp_path, embedder):
    # 'This facility is called the callback API.': what 'this facility' is stands in the paragraph before
    assistant = assistant_over(tmp_path, {"gauge.md": CLOSURE_DOC}, embedder)
    answer = assistant.ask("What is the callback API?")
    assert not answer.abstained, answer.text
    assert "generic handler that can accept and decode any reading" in answer.text, answer.text
    assert answer.text.index("generic handler") < answer.text.index("This facility is called"), answer.text
    for c in answer.citations:
        assert CLOSURE_DOC[c.start : c.end] == c.quote
