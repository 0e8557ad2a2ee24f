"""What kind of answer a question expects, and the specific names it asks about.

Two checks no score threshold can make: a question about a number, a date or an amount is
only answered by a passage that holds one; and a question naming an identifier the corpus
never mentions ("ASL-5", "v2.6", "Haiku 5") is not answered by a passage about its neighbour.
"""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import PurePosixPath

from .terms import content_terms

# month names as dates write them: capitalised ('march', 'august' are words too), and 'May' beside a
# number ('it may need to be removed' is no date)
_MONTHS = r"(?:January|February|March|April|June|July|August|September|October|November|December)\b|May\s+\d|\d\s+May\b"
_NUMBER_WORDS = r"(one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|dozen|hundred|thousand|million|billion|half|halves|twice|double|triple|thirds?|quarters?)"
_BARE_NUMBER = r"(?<![\w.\-])\d[\d,]*(\.\d+)?(?![\w\-]|\.\w)"

PATTERNS = {
    "date": re.compile(rf"\b(?:{_MONTHS})|\b1[0-9]\d\d\b|\b20\d\d\b|\b[qQ][1-4]\b|\bquarter\b"),
    "number": re.compile(rf"{_BARE_NUMBER}|\b{_NUMBER_WORDS}\b", re.IGNORECASE),
    "percent": re.compile(r"%|\bper ?cent\b", re.IGNORECASE),
    # 'v2.5', '20.17.0', 'version 3' (not '9.1 million')
    "version": re.compile(r"(?<![\w.])v\d+(?:\.\d+)*\b|(?<![\w.])\d+\.\d+\.\d+(?![\w.])|\bversion\s+\d", re.IGNORECASE),
    "year": re.compile(r"\b(?:1[0-9]|20)\d\d\b"),
    # a count or a length said without a bare number: 'SL-1 to SL-5', 'levels 1–4', '(>several days)'
    "span": re.compile(
        r"\b[A-Za-z]*-?\d+\s*(?:to|through|–|—)\s*[A-Za-z]*-?\d+\b"
        r"|\b(?:several|a few|many|multiple)\s+(?:seconds|minutes|hours|days|weeks|months|years|decades)\b",
        re.IGNORECASE,
    ),
    # how long something lasts or is: 'eighty seconds', 'a year', '3 to 4 hours', '(>several days)', '80 characters'
    "duration": re.compile(
        r"\b(?:nano|micro|milli)?seconds?\b|\b(?:ms|secs?|minutes?|mins?|hours?|hrs?|days?|nights?|weeks?|fortnights?"
        r"|months?|years?|yrs?|decades?|century|centuries|millennia|lifetime|forever|indefinitely"
        r"|metres?|meters?|kilometres?|kilometers?|km|miles?|feet|foot|ft|inches?|cm|mm|characters?|chars?|bytes?"
        r"|words?|lines?|pages?)\b|\d(?:ms|s|h|m|d)\b",  # lower case: 'Minute Maid Park' names a park
    ),
    # how often: 'every 3–6 months', 'twice a year', 'annually', 'once per release'
    "frequency": re.compile(
        r"\b(?:every|each|per|times|once|twice|thrice|daily|weekly|monthly|quarterly|annual(?:ly)?|yearly|hourly"
        r"|biannual(?:ly)?|biennial(?:ly)?|nightly|always|never|rarely|often|seldom|occasionally|continuous(?:ly)?)\b",
        re.IGNORECASE,
    ),
    # '$5', '5 dollars', 'five pounds', 'twelve thousand euros'
    "money": re.compile(
        rf"[$€£¥]\s?\d|\b(?:\d[\d,.]*|{_NUMBER_WORDS})\s?(million|billion|thousand|hundred)?\s?(dollars|usd|eur|euros|pounds|pence|cents)\b",
        re.IGNORECASE,
    ),
    # 'help-libtasn1@gnu.org', 'tal197 at users.sf.net'
    "email": re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+|\b[\w.+-]+ at [\w-]+(?:\.[\w-]+)*\.[a-z]{2,}\b"),
    # 'CARGO_TARGET_DIR', '$HOME', 'the PATH environment variable', 'PAGER=less'
    "variable": re.compile(
        r"\$\{?[A-Za-z_][A-Za-z0-9_]*|\b[A-Z][A-Z0-9]*_[A-Z0-9_]+\b|\b[A-Z][A-Z0-9_]{2,}(?:=|\s+(?:environment\s+)?variable)"
    ),
}

# up to three words between 'what/which' and the noun it asks for ('what exact date', 'which month
# and year', 'what concrete milestone dates'), none a verb or preposition ('what happened in the year')
_MODIFIERS = (r"(?:(?!(?:is|are|was|were|did|does|do|has|have|had|can|could|will|would|should|happened|happens"
              r"|of|in|on|at|for|to|by|about|with|from)\b)\w+\s+){0,3}")
_THE = r"(?:(?:is|are|was|were)\s+(?:the|its|their|his|her)\s+)?"
_DOTTED_MODIFIERS = _MODIFIERS.replace(r"\w+\s+", r"[\w.-]+\s+")  # 'which Node.js version'
_ASKS = [
    ("percent", re.compile(r"\b(what|which) (percentage|percent|share|proportion)\b|\bhow many percent\b", re.I)),
    ("money", re.compile(r"\bhow much (money|did|does|has|have|was|is|will)\b.*\b(cost|spend|spent|pay|paid|worth|budget|fund|invest)|\b(dollar|monetary) (value|amount)\b|\bhow much .*\b(worth|cost)\b", re.I)),
    # 'What is the maximum number of arguments …?', 'What numeric uid …?', 'What uid range …?'
    ("duration", re.compile(r"\bhow long\b", re.I)),
    # 'What email address …?', 'What is the email address of …?'; 'Which environment variable …?'
    ("email", re.compile(rf"\b(what|which)\s+{_THE}{_MODIFIERS}e-?mail\s+address(es)?\b", re.I)),
    ("variable", re.compile(rf"\b(what|which)\s+{_THE}{_MODIFIERS}environment\s+variables?\b", re.I)),
    ("frequency", re.compile(r"\bhow often\b|\bhow frequently\b", re.I)),
    # 'What is the default value of the 'undolevels' option?': a value, not the option's name again
    ("value", re.compile(r"\bdefault\s+(?:value|setting)s?\s+(?:of|for)\b", re.I)),
    ("number", re.compile(r"\bhow (many|much)\b|\bwhat (score|number|count|amount)\b"
                          r"|^\s*(what|which)\s+(is|was|are|were)\s+the\s+(\w+\s+){0,2}(number|count|total)\s+of\b"
                          r"|\b(what|which)\s+(is\s+the\s+)?(numeric|numerical)\b|\b(what|which)\s+(is\s+the\s+)?(\w+\s+){0,2}range\b", re.I)),
    # 'Which RSP version …', 'In which Node.js version …' — not 'What's the interface for finding out which
    # Python versions are supported?', whose 'which' opens a clause inside the question
    ("version", re.compile(rf"^\W*(?:\w+\s+){{0,2}}?(what|which)\s+{_DOTTED_MODIFIERS}(versions?|releases?)\b", re.I)),
    # 'When is the 'newListener' event emitted?', 'When do cash flow problems exist?': a date or a condition
    ("occasion", re.compile(r"^\s*when\s+(is|are|does|do)\b", re.I)),
    ("date", re.compile(rf"^\s*(when|in what year|since when|by when)\b|\b(what|which)\s+{_MODIFIERS}(dates?|years?|months?|day)\b", re.I)),
]
# what says when something happens, other than a date: '… _before_ a listener is added'
_CONDITION = re.compile(  # '_before_': Markdown's emphasis is no word
    r"(?<![a-z])(when|whenever|before|after|once|until|while|as soon as|if|every|each time|at the end|at the start)(?![a-z])",
    re.I,
)

_YEAR = re.compile(r"(?<![\w.\-])(1[0-9]|20)\d\d(?![\w\-]|\.\d)")
_IDENTIFIER = re.compile(r"\b[A-Za-z]+[-‐–]?\d+(?:\.\d+)*\b|\b\d+\.\d+\b|\b[A-Z][a-z]+ \d+(?:\.\d+)*\b")


# 'When the river broke through, how did the council answer?': the clause before the comma sets the
# scene; the question is what follows it
_SCENE = re.compile(
    r"^\s*when\b[^?,]*,\s*(?=(?:how|what|which|who|whom|whose|why|where"
    r"|when|did|does|do|is|are|was|were|can|could|should|would|will|has|have|had)\b)",
    re.I,
)


# what else answers when no candidate holds the type asked for: a version may be a year ('the
# 2010 version of the theme') when no candidate holds a version number
FALLBACK = {"version": "year"}


# 'What can be used to cap how much CPU time … a process gets?' asks what, not how much: a 'how …'
# inside a clause an earlier question word opens (not after a comma or an 'and': '…, how long do they
# have …?', 'which options, and how many lines …?')
_FIRST_ASKING = re.compile(r"\b(what|which|whom|whose|where|why|when|how)\b", re.I)
_CLAUSE_START = re.compile(r"(?:^|[,;:—–(]|\b(?:and|or|but))\s*$", re.I)


def expected_type(question: str) -> str | None:
    scene = _SCENE.match(question)
    if scene:
        question = question[scene.end():]
    first = _FIRST_ASKING.search(question)
    for kind, pattern in _ASKS:
        m = pattern.search(question)
        if m and first and m.group(0).lower().startswith("how") and m.start() > first.start():
            m = next((x for x in pattern.finditer(question)
                      if not x.group(0).lower().startswith("how") or _CLAUSE_START.search(question[: x.start()])), None)
        if m:
            return kind
    return None


_ADDRESS = re.compile(r"\]\([^)\s]*\)|<?\b(?:https?|ftp)://[^\s>)]*>?")  # a Markdown link's target, a URL


_HOW_MANY = re.compile(r"\bhow\s+many\s+([\w-]+)(?:\s+([\w-]+))?", re.I)


def counted(question: str) -> str:
    """The stem of what 'How many X …?' counts ('How many phases does the event loop have?': phase;
    'How many security levels …?': level), or ''."""
    m = _HOW_MANY.search(question)
    for word in m.groups() if m else ():
        if word and word.lower().endswith("s") and (terms := content_terms(word)):
            return terms[0]
    return ""


def _counts(text: str, thing: str) -> bool:
    """Whether the text holds a count: a number, but 'one' only when it counts `thing` ('one phase';
    not the 'one' of 'at least one listener' or 'one of the largest' for 'How many phases …?')."""
    for m in PATTERNS["number"].finditer(text):
        if m.group(0).lower() != "one" or not thing:
            return True
        if thing in content_terms(" ".join(text[m.end():].split()[:2])):
            return True
    return False


def satisfies(kind: str | None, text: str, named: frozenset[str] | set[str] = frozenset(), thing: str = "") -> bool:
    """Whether the text holds what the question asks for. The numbers inside the names the
    question itself names do not count: in 'What score did Claude Opus 4 achieve?', a sentence
    about 'Opus 4' holds no score because of its '4'. Nor do the numbers of a link's address
    ('[Node.js 19](https://…/blob/v19.x/BUILDING.md)' names no version of Python)."""
    if kind is None:
        return True
    text = _ADDRESS.sub(" ", text)
    if named:
        text = _IDENTIFIER.sub(lambda m: " " if _canon(m.group(0)) in named else m.group(0), text)
    if kind == "money":  # an amount of money is a number with a currency or a scale word
        return bool(PATTERNS["money"].search(text))
    if kind == "frequency":
        return bool(PATTERNS["frequency"].search(text) or PATTERNS["duration"].search(text))
    if kind == "occasion":
        return bool(PATTERNS["date"].search(text) or _CONDITION.search(text))
    if kind == "value":  # a number, a literal in code, or a word a setting takes ('true', 'off', 'empty')
        return bool(PATTERNS["number"].search(text) or _LITERAL.search(text))
    if kind == "number":  # a year is not a count, a score or a duration
        text = _YEAR.sub(" ", text)
        return bool(_counts(text, thing) or PATTERNS["percent"].search(text) or PATTERNS["span"].search(text)
                    or _COUNT_OF.search(text))
    return bool(PATTERNS[kind].search(text))


_LITERAL = re.compile(r"`[^`\s][^`]{0,40}`|\b(?:true|false|null|empty|off|unlimited|unset|disabled|enabled)\b", re.I)
# a count said by what it counts: 'Defaults to the number of logical CPUs.'
_COUNT_OF = re.compile(r"\b(?:defaults? to|equal to|uses?|to|as many as|one per|one for each)\s+the\s+number\s+of\b", re.I)


_LEADING_WORD = re.compile(r"^([a-z]+)-(?=\d)")
_PLAIN_WORDS = {"in", "on", "at", "by", "since", "from", "to", "of", "for", "and", "or", "the", "until", "after",
                "before", "during", "around", "about", "version", "ver", "level", "tier", "section", "item", "page",
                "paragraph", "clause", "subsection", "subclause"}


def _canon(identifier: str) -> str:
    ident = re.sub(r"[\s‐–-]+", "-", identifier.lower())
    m = _LEADING_WORD.match(ident)
    if m and m.group(1) in _PLAIN_WORDS:  # 'In 2025', 'version 2.6': the number is the identifier
        ident = ident[m.end():]
    return ident


def identifiers(text: str) -> set[str]:
    """Specific names with numbers in them: ASL-3, v2.1, SB 53, 4.5, Haiku 4.5."""
    return {_canon(m.group(0)) for m in _IDENTIFIER.finditer(text)}


def corpus_identifiers(texts) -> set[str]:
    """Identifiers of a corpus, with their bare numbers too ('v2.1' also gives '2.1')."""
    out: set[str] = set()
    for text in texts:
        for ident in identifiers(text):
            out.add(ident)
            out.add(re.sub(r"^[a-z]+-?", "", ident))
    return out


def unknown_identifiers(question: str, known: set[str]) -> set[str]:
    """Identifiers the question names that the corpus never does."""
    return {i for i in identifiers(question) if i not in known and not i.isdigit()}


# “…”, "…", `…`, ‘…’, and '…' where the quote marks stand outside words (not the apostrophes of "it's")
_QUOTED = re.compile(r"(?:[“\"`‘]|(?<!\w)')([^“”\"`‘’]{2,80}?)(?:[”\"`’]|'(?!\w))")


def quoted(text: str) -> set[str]:
    """Phrases the question puts in quotes ('the “If-Then” structure'), lower-cased: a unit that
    holds one word for word is about what was asked, even when its words are stopwords."""
    return {" ".join(m.group(1).lower().split()) for m in _QUOTED.finditer(text) if re.search(r"\w", m.group(1))}


_ACRONYM_ASKED = re.compile(
    r"\bwhat\s+(?:does|do|did)\s+(?:the\s+)?(?:acronym\s+|abbreviation\s+|initialism\s+|letters\s+)?[“\"'`]?"
    r"([A-Z][A-Za-z0-9&.-]{1,11})[”\"'`]?\s+(?:stand\s+for|mean)\b"
    r"|\bwhat\s+is\s+[“\"'`]?([A-Z][A-Za-z0-9&.-]{1,11})[”\"'`]?\s+(?:short\s+for|an?\s+(?:acronym|abbreviation)\s+(?:for|of))\b",
    re.IGNORECASE,
)
_MINOR = {"of", "and", "the", "for", "in", "on", "to", "a", "an", "&"}


def acronym_asked(question: str) -> str | None:
    """The abbreviation a question asks to spell out ('What does MATS stand for?'), if any:
    only one written with capitals (or digits) after its first letter."""
    m = _ACRONYM_ASKED.search(question)
    word = (m.group(1) or m.group(2)) if m else None
    return word if word and sum(c.isupper() for c in word) >= 2 else None


def spells_out(acronym: str, text: str) -> bool:
    """Does the text write the acronym out beside it: 'MATS (ML Alignment & Theory Scholars)' or
    'Model Evaluation & Threat Research (METR)'? The initials of the expansion's words, minor
    words left out, must spell the acronym."""
    letters = [c.lower() for c in acronym if c.isalnum()]
    esc = re.escape(acronym)
    for m in re.finditer(rf"(?<!\w){esc}\s*[(\[]([^()\[\]]{{3,120}})[)\]]|([^()\[\].;:]{{3,120}}?)\s*[(\[]{esc}[)\]]", text):
        words = [w for w in re.findall(r"[A-Za-z0-9]+", m.group(1) or m.group(2)) if w.lower() not in _MINOR]
        # the expansion may follow other words before the '(MATS)'
        if any(_initials(words[start:], letters) for start in range(len(words))):
            return True
    return False


def _initials(words: list[str], letters: list[str]) -> bool:
    """Do the words' initials spell the letters? A word in capitals may give all its letters
    ('general-purpose AI' spells GPAI) or only its first ('ML Alignment & Theory Scholars': MATS)."""
    if not words:
        return not letters
    w = words[0]
    options = [w[0].lower()] + ([w.lower()] if w.isupper() and len(w) > 1 else [])
    return any(letters[: len(o)] == list(o) and _initials(words[1:], letters[len(o):]) for o in options)


# a heading that names a thing: a flag, a function, an attribute, a lint ('--crate-name', 'path.join()')
_IDENTIFIER_LIKE = re.compile(r"[`_\-.()/#]|[a-z][A-Z]|[A-Za-z]\d")
_IDENT_CHARS = re.compile(r"[`'\"“”‘’()\[\]]")


# 'Class: `URLSearchParams`', 'Event: `'close'`', 'Static method: …': the kind of thing a heading names
_KIND_LABEL = re.compile(
    r"^\s*(?:static\s+|instance\s+)?(?:class|event|constructor|method|property|function|interface|module"
    r"|type|enum|struct|trait|macro|constant|attribute|lint|option|flag|command|field)\s*:\s+",
    re.IGNORECASE,
)


def _heading_words(heading: str) -> list[str]:
    """The words of an identifier-like heading's name ('`f(path)`: about f' names f; 'Class:
    `URLSearchParams`' names URLSearchParams), or []."""
    name = re.split(r":\s|\s[—–-]\s", _KIND_LABEL.sub("", heading), maxsplit=1)[0]
    if not _IDENTIFIER_LIKE.search(name):
        return []
    words = _IDENT_CHARS.sub(" ", re.sub(r"\(.*?\)", " ", name)).lower().split()
    if words and words[0].startswith("-"):  # '--target triple', '-j N, --jobs N': the flags, not their arguments
        # ('--separate-recs=<level> [default: 2]' is the flag --separate-recs)
        words = [re.sub(r"=.*$", "", w.rstrip(",")) for w in words if w.startswith("-")]
    return words if len(words) <= 5 else []


def _asked_words(question: str) -> set[str]:
    return set(_IDENT_CHARS.sub(" ", question).lower().replace("?", " ").split())


def heading_named(heading: str, question: str) -> bool:
    """Does the question name this section's heading (a flag, function, attribute, lint …)?"""
    words = _heading_words(heading)
    asked = _asked_words(question)
    said = [w in asked or w.rstrip(".,:;") in asked for w in words]
    if words and all(w.startswith("-") for w in words):  # '-j N, --jobs N': either spelling names it
        # and a long flag by its name alone ('the default threshold' and '--threshold=<0--100>')
        return any(said) or any(w.startswith("--") and w[2:] in asked for w in words if len(w) > 5)
    return bool(words) and all(said)


# what a question that only asks what a named thing is or does says besides the name
_DEFINING = {"what", "what's", "whats", "does", "do", "is", "are", "the", "a", "an", "method", "function", "property",
             "option", "flag", "attribute", "class", "event", "lint", "setting", "command",
             "mean", "means", "used", "use", "for", "purpose", "of", "how", "work", "works"}


def _undefining_words(question: str) -> set[str]:
    return {w.strip(".,:;!") for w in _asked_words(question)} - _DEFINING - {""}


def may_ask_what_it_is(question: str) -> bool:
    """A cheap test before asks_what_it_is: few enough words beyond 'what does … do' to be only the
    name of a heading (at most 5 words, each possibly in two spellings)."""
    return len(_undefining_words(question)) <= 10


def asks_what_it_is(question: str, heading: str, context: tuple[str, ...] = ()) -> bool:
    """'What does rl.prompt() do?' about the section headed '`rl.prompt([preserveCursor])`': the
    question names the heading and asks nothing else (what it is, does, is for; not what it returns),
    save words of the headings above it (context): 'What does cargo build --release do?' about
    '--release' under 'cargo-build(1)'."""
    if not heading_named(heading, question):
        return False
    words = _heading_words(heading)
    extra = _undefining_words(question) - set(words) - {w.rstrip(".,:;") for w in words}
    if extra and context:
        around = {w for h in context for w in re.findall(r"[a-z0-9]+", h.lower())}
        extra = {w for w in extra if not set(re.findall(r"[a-z0-9]+", w)) <= around}
    return not extra


# "Summarise …", "List …", "What are the main criticisms …", "How do I …": the answer is a list
BROAD = re.compile(
    r"^\s*(?:please\s+)?(?:summari[sz]e|list|outline|enumerate"
    r"|give\s+(?:me\s+)?(?:an?\s+|the\s+)?(?:overview|summary|list|timeline|rundown|history)"
    r"|what\s+(?:are|were)\s+(?:all\s+)?the\s+(?:main|key|major|principal)\s|how\s+(?:do|can|should)\s+(?:i|you|we)\s"
    r"|what\s+(?:steps|stages)|which\s+steps"
    # 'How is a model's CBRN uplift evaluated?', 'How are reviewers chosen?': how something is done
    r"|how\s+(?:is|are|was|were)\s+[^?]*\b(?:\w+ed|chosen)\s*\??\s*$)",
    re.IGNORECASE,
)


def is_broad(question: str) -> bool:
    return bool(BROAD.search(question))


# '1. CBRN', '2.1. The glob files', 'iv. Scope', 'a) Terms': numbering is not part of the name
_NUMBERING = re.compile(r"^\s*(?:\d+(?:\.\d+)*\.?|[ivxlc]+\.|[a-z]\))\s+", re.IGNORECASE)


@lru_cache(maxsize=256)
def _section_question(question: str) -> tuple[frozenset[str], int]:
    """The question's content words ('How do I …' asks with 'I') and how many beyond a heading's it
    may have; asked once per question, not once per candidate section."""
    return frozenset(content_terms(question)) - {"i"}, 1 if is_broad(question) else 0


def section_asked(question: str, section: tuple[str, ...], source: str = "") -> int | None:
    """The depth of the deepest heading in a heading trail that the question asks about as a whole
    ('Summarise the academic critique.' and '## Academic critique'; 'What are the industry-practice
    observations?'), or None. The question's content words must hold every content word of the
    heading and nothing else, save one more for a broad question ('Summarise the academic critique
    of the RSP.'). A top heading that only names its document's file ('Libtasn1' in libtasn1.pdf)
    is the whole document, not a section: 'What are the main features of Libtasn1?' asks about
    what it describes, not for its outline."""
    asked, extra = _section_question(question)
    if not asked:
        return None
    for depth in range(len(section) - 1, -1, -1):
        named = set(content_terms(_KIND_LABEL.sub("", _NUMBERING.sub("", section[depth]))))
        if named and named <= asked and len(asked - named) <= extra:
            if depth == 0 and source and named <= path_terms(source):
                return None
            return depth
    return None


@lru_cache(maxsize=4096)
def path_terms(source: str) -> frozenset[str]:
    """The content words of a document's path, without its extension ('libffi-manual/Types.html':
    libffi, manual, types)."""
    path = PurePosixPath(source)
    return frozenset(content_terms(" ".join((*path.parts[:-1], path.stem)).replace("-", " ").replace("_", " ")))


# what may follow the term without being part of it: 'in the Apache License 2.0', ', as described in
# the chapter'
_QUALIFYING = r"\s*,?\s+(?:in|under|within|according\s+to|as\s+(?:described|defined|used)\s+in)\b[^?]*"
_QUALIFIER = rf"(?:{_QUALIFYING})?"
_QUALIFIED = re.compile(rf"(?P<q>{_QUALIFYING})\s*[?.]?\s*$", re.IGNORECASE)
_DEFINE_ASKED = re.compile(
    r"^\s*(?:(?:in|under|according\s+to)\b[^,?]{1,60},\s*)?"  # 'Under the MPL, what …'
    r"(?:what\s+(?:is|are)\s+(?:an?\s+|the\s+)?(?P<is>[^?,]{2,60}?)"
    r"|what\s+(?:does|do)\s+(?:an?\s+|the\s+)?(?P<mean>[^?,]{2,60}?)\s+mean"
    r"|what\s+(?:does|do)\s+[^?]{1,40}?\s+mean\s+by\s+(?:an?\s+|the\s+)?(?P<by>[^?,]{2,60}?)"
    r"|what\s+is\s+meant\s+by\s+(?:an?\s+|the\s+)?(?P<meant>[^?,]{2,60}?)"
    r"|define\s+(?:an?\s+|the\s+)?(?P<define>[^?,]{2,60}?))" + _QUALIFIER + r"\s*[?.]?\s*$",
    re.IGNORECASE,
)
# 'Under the MPL, what does "Source Code Form" mean?', 'In the MPL, what is the "Executable Form" of a
# work?', 'What does "Source" form mean …?': a quoted term asked to be defined, whatever the question
# says before it
_QUOTED_DEFINE = re.compile(
    r"\bwhat\s+(?:is|are|does|do)\s+(?:an?\s+|the\s+)?[\"“'‘](?P<term>[^\"”'’]{2,60})[\"”'’]"
    r"(?P<tail>(?:\s+\w+){0,2}?)(?:\s+(?:mean|of|in|under)\b[^?]*)?\s*\??\s*$",
    re.IGNORECASE,
)
_QUOTES = "\"“”'‘’"


@lru_cache(maxsize=256)
def _definition_subject(question: str) -> str:
    m = _QUOTED_DEFINE.search(question)
    if m:
        return (m.group("term") + m.group("tail")).strip()
    m = _DEFINE_ASKED.match(question)
    if not m:
        return ""
    subject = next(g for g in m.groups() if g).strip().strip(_QUOTES)
    # 'What does it mean?' names nothing
    return subject if len(subject.split()) <= 6 and content_terms(subject) else ""


@lru_cache(maxsize=256)
def _definition_pattern(question: str) -> re.Pattern | None:
    subject = _definition_subject(question)
    if not subject:
        return None
    # each word may stand in quotes ('"Source" form shall mean'); a short clause may come first ('In
    # this context, a bad state is …')
    words = rf"[{_QUOTES}]?\s+[{_QUOTES}]?".join(re.escape(w) for w in subject.split())
    return re.compile(
        rf"^(?:[^,.;:]{{1,40}},\s+)?[\s*_`>-]*(?:the\s+|an?\s+)?[{_QUOTES}]?{words}[{_QUOTES}]?[*_`]*(?:\s*\([^)]{{1,60}}\))?,?\s+"
        r"(?:is|are|was|were|refers\s+to|means|shall\s+mean|denotes|stands\s+for|has\s+the\s+meaning)\b",
        re.IGNORECASE,
    )


@lru_cache(maxsize=256)
def _naming_pattern(question: str) -> re.Pattern | None:
    """'Being ready for unwinding is often referred to as exception safety …': a sentence that gives
    the asked term as the name of what it describes."""
    subject = _definition_subject(question)
    if not subject:
        return None
    words = r"\s+".join(re.escape(w) for w in subject.split())
    return re.compile(
        rf"\b(?:is|are)\s+(?:\w+\s+){{0,2}}?(?:referred\s+to\s+as|called|known\s+as|termed)\s+(?:an?\s+|the\s+)?"
        rf"[{_QUOTES}*_`]*{words}(?![\w-])",
        re.IGNORECASE,
    )


def qualifier(question: str) -> str:
    """What a question asking for a definition adds after the term to say where ('in Callgrind's
    call graph' in 'What is a cycle in Callgrind's call graph?'), or ''. It picks the document; the
    answer need not repeat it."""
    subject = _definition_subject(question)
    m = _QUALIFIED.search(question) if subject and not re.match(r"(?:name|number|date|year)\b", subject, re.I) else None
    if not m or subject.lower() in m.group("q").lower():
        return ""
    # a place, not a time: 'in 1564' in 'What is the name of the French colony established in 1564?' is asked
    return m.group("q").strip() if any(re.search("[a-z]", t) for t in content_terms(m.group("q"))) else ""


def defined_subject(question: str) -> str:
    """What 'What is a dpkg trigger?' ('What does "Source Code Form" mean?', 'Define X') asks to be
    defined ('dpkg trigger'), or ''."""
    return _definition_subject(question)


def defines(question: str, text: str) -> bool:
    """Does the text define what the question asks to be defined: 'What is a dpkg trigger?' and
    'A dpkg trigger is a facility that …'; 'What does "License" mean?' and '"License" shall mean …';
    'What is exception safety?' and '… is often referred to as exception safety'?"""
    pattern, naming = _definition_pattern(question), _naming_pattern(question)
    return bool(pattern and pattern.match(text)) or bool(naming and naming.search(text))


def names_term(heading: str, subject: str) -> bool:
    """Is the section headed by the term a question asks to be defined: '1.13. "Source Code Form"'
    (a licence's numbered definition over its 'means …'), 'Source code form:', '`plugdev`'?"""
    def key(term: str) -> str:  # 'Secondary Licenses' is the term 'Secondary License'
        return re.sub(r"(?<=[a-z])s$", "", " ".join(term.lower().split()))

    bare = _NUMBERING.sub("", heading).strip().rstrip(":").strip().strip(_QUOTES + "`*_")
    return bool(subject) and key(bare) == key(subject)
