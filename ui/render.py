"""HTML and Markdown for the chat UI. Every piece of corpus or user text goes through esc() first.

Nothing here touches Gradio: these are plain functions from records to strings, so they can be tested
(and reasoned about for escaping) on their own.
"""
from __future__ import annotations

import html
import re
from datetime import datetime
from pathlib import Path

from ingest.settings import REPO_ROOT

_REF = re.compile(r"\[(\d{1,3})\]")
_ABS_PATH = re.compile(r"(?<![\w.~:/])/(?:[^\s/'\"`()\[\]<>:;,]+/)*[^\s/'\"`()\[\]<>:;,]+")
MAX_CONTEXT = 1500  # characters of paragraph shown on each side of a cited span


def esc(text: object) -> str:
    """HTML-escape text (quotes too), so that it can only ever render as text."""
    return html.escape(str(text), quote=True)


def esc_lines(text: str) -> str:
    return esc(text).replace("\n", "<br>")


def public_message(message: str) -> str:
    """One line for a browser: no machine paths (repo paths become relative, others lose their folders)."""
    root = str(REPO_ROOT) + "/"
    message = message.replace(root, "")

    def _short(m: re.Match) -> str:
        name = Path(m.group(0)).name
        return f"…/{name}" if name else "…"

    return " ".join(_ABS_PATH.sub(_short, message).split())


def fmt_time(iso: str) -> str:
    try:
        when = datetime.fromisoformat(iso)
    except (TypeError, ValueError):
        return iso or "unknown time"
    zone = "UTC" if when.utcoffset() is not None and not when.utcoffset() else when.strftime("%z")
    return f"{when:%Y-%m-%d %H:%M} {zone}".strip()


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def trail(section: str) -> str:
    return section.strip() or "Beginning of the document"


# -- header --------------------------------------------------------------------------------------------
def header_html(title: str, info=None, error: str = "") -> str:
    if error:
        corpus = f'<div class="rag-corpus rag-warn">⚠ {esc(error)}</div>'
    elif info is not None:
        corpus = (
            '<div class="rag-corpus">'
            f"<span>{esc(plural(info.documents, 'document'))}</span>"
            f"<span>{esc(plural(info.chunks, 'passage'))} indexed</span>"
            f"<span>ingested {esc(fmt_time(info.ingested_at))}</span>"
            f"<span>collection <code>{esc(info.collection)}</code></span>"
            "</div>"
        )
    else:
        corpus = ""
    return (
        '<div class="rag-header">'
        f'<div class="rag-title">{esc(title)}</div>'
        '<div class="rag-subtitle">Answers only from the ingested documents — every claim cites the passage '
        "it came from, and it says so when the documents do not.</div>"
        f"{corpus}</div>"
    )


# -- chat messages ---------------------------------------------------------------------------------------
def answer_body(text: str, code: tuple[str, ...] | list[str] = ()) -> str:
    """The answer text, escaped, with its [n] markers set apart; quoted code (`code`: the quotes
    of code units) is shown preformatted, its lines kept."""
    spans = []
    for quote in {q.strip() for q in code if q and q.strip()}:
        at = text.find(quote)
        while at >= 0:
            spans.append((at, at + len(quote)))
            at = text.find(quote, at + len(quote))
    spans.sort()
    out, pos = [], 0
    for a, b in spans:
        if a < pos:
            continue
        out.append(_REF.sub(r'<span class="rag-ref">[\1]</span>', esc_lines(text[pos:a])))
        out.append(f'<pre class="rag-code">{esc(text[a:b])}</pre>')
        pos = b
    out.append(_REF.sub(r'<span class="rag-ref">[\1]</span>', esc_lines(text[pos:])))
    return "".join(out)


def user_message(question: str) -> str:
    if not question.strip():
        return '<span class="rag-muted">(no question)</span>'
    if len(question) > 600:
        question = question[:600] + "…"
    return esc_lines(question)


def pending_message(text: str = "") -> str:
    if not text:
        return '<span class="rag-muted">Searching the documents…</span>'
    return f'<div class="rag-answer">{answer_body(text)}<span class="rag-cursor">▍</span></div>'


def where(c: dict) -> str:
    """'report.pdf, p. 12' for a PDF citation, else its source path (Citation.where)."""
    return str(c.get("where") or c["source"])


def source_line(c: dict) -> str:
    return (
        f'<li><span class="rag-n">[{int(c["n"])}]</span> '
        f'<span class="rag-trail">{esc(trail(c.get("section", "")))}</span> '
        f'<span class="rag-where">{esc(where(c))} · {int(c["start"])}–{int(c["end"])}</span></li>'
    )


def exchange_message(ex: dict) -> str:
    """The assistant's side of one exchange: answer, then its sources (or an error, or an abstention)."""
    if ex.get("error"):
        return f'<div class="rag-error">⚠ {esc(ex["error"])}</div>'
    parts = []
    if ex.get("abstained"):
        parts.append(f'<div class="rag-answer rag-abstain">{esc_lines(ex["answer"])}</div>')
        if ex.get("related"):
            items = "".join(
                f'<li><span class="rag-trail">{esc(trail(r.get("section", "")))}</span> '
                f'<span class="rag-where">{esc(where(r))}</span><br>'
                f'<span class="rag-quote">{esc(_clip(r["quote"], 220))}</span></li>'
                for r in ex["related"]
            )
            parts.append(
                '<div class="rag-related"><div class="rag-label">Related passages (not an answer)</div>'
                f"<ul>{items}</ul></div>"
            )
    else:
        code = [c["quote"] for c in ex.get("citations") or [] if c.get("kind") == "code"]
        parts.append(f'<div class="rag-answer">{answer_body(ex["answer"], code)}</div>')
        if ex.get("citations"):
            items = "".join(source_line(c) for c in ex["citations"])
            parts.append(f'<div class="rag-sources"><div class="rag-label">Sources</div><ol>{items}</ol></div>')
    if ex.get("notice"):
        parts.append(f'<div class="rag-notice">{esc(ex["notice"])}</div>')
    return "".join(parts)


def chat_messages(exchanges: list[dict], pending: tuple[str, str] | None = None) -> list[dict]:
    """The Chatbot value: two messages per exchange (the like event relies on that), then the pending one."""
    out: list[dict] = []
    for ex in exchanges:
        out.append({"role": "user", "content": user_message(ex["question"])})
        out.append({"role": "assistant", "content": exchange_message(ex)})
    if pending is not None:
        question, text = pending
        out.append({"role": "user", "content": user_message(question)})
        out.append({"role": "assistant", "content": pending_message(text)})
    return out


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


# -- the source panel ---------------------------------------------------------------------------------------
PANEL_EMPTY = (
    '<div class="rag-panel rag-panel-empty">'
    '<div class="rag-panel-title">Passage</div>'
    "<p>Ask a question, then pick one of its sources to read the cited passage in its paragraph.</p>"
    "</div>"
)


def panel_html(c: dict, paragraph: str | None, para_start: int = 0, warning: str = "", pages: tuple = ()) -> str:
    """A cited span in its paragraph (in a PDF: in its page), highlighted; with the heading trail,
    the file (and page) and the character range. A code unit is shown preformatted."""
    from ingest.records import format_pages

    start, end = int(c["start"]), int(c["end"])
    if paragraph is None:
        before, quote, after = "", c["quote"], ""
    else:
        before = paragraph[: start - para_start]
        quote = paragraph[start - para_start : end - para_start]
        after = paragraph[end - para_start :]
        if len(before) > MAX_CONTEXT:
            before = "…" + before[-MAX_CONTEXT:]
        if len(after) > MAX_CONTEXT:
            after = after[:MAX_CONTEXT] + "…"
    header = ""
    if c.get("header"):
        header = f'<div class="rag-table-header"><span class="rag-label">Table header</span> {esc(c["header"])}</div>'
    warn = f'<div class="rag-warn">⚠ {esc(warning)}</div>' if warning else ""
    page = format_pages(tuple(pages or c.get("pages") or ()))
    page_html = f' · <span class="rag-page">{esc(page)}</span>' if page else ""
    body = "rag-para rag-code" if c.get("kind") == "code" else "rag-para"
    return (
        '<div class="rag-panel">'
        f'<div class="rag-panel-title"><span class="rag-n">[{int(c["n"])}]</span> {esc(trail(c.get("section", "")))}</div>'
        f'<div class="rag-panel-where"><span class="rag-file">{esc(c["source"])}</span>{page_html}'
        f" · characters {start:,}–{end:,}</div>"
        f"{warn}{header}"
        f'<div class="{body}">{esc(before)}<mark>{esc(quote)}</mark>{esc(after)}</div>'
        "</div>"
    )


def panel_message(text: str) -> str:
    return f'<div class="rag-panel"><div class="rag-warn">⚠ {esc(text)}</div></div>'


def source_choice(c: dict) -> str:
    """A plain-text label for a source option (Gradio renders these as text, never as markup)."""
    return f"[{int(c['n'])}] {_clip(trail(c.get('section', '')), 70)} — {where(c)}"


# -- export -----------------------------------------------------------------------------------------------
def md_text(text: str) -> str:
    """Text for the exported Markdown: no raw HTML, no live links."""
    return html.escape(text, quote=False).replace("](", "]\\(")


def _pages_md(c: dict) -> str:
    from ingest.records import format_pages

    page = format_pages(tuple(c.get("pages") or ()))
    return f" {page}," if page else ""


def export_markdown(title: str, exchanges: list[dict], corpus_line: str, when: str) -> str:
    lines = [f"# {md_text(title)} — conversation", "", f"Exported {when}. {corpus_line}", ""]
    for i, ex in enumerate(exchanges, 1):
        lines += [f"## {i}. {md_text(' '.join(ex['question'].split())) or '(no question)'}", ""]
        if ex.get("error"):
            lines += [f"_Error: {md_text(ex['error'])}_", ""]
            continue
        lines += [md_text(ex["answer"]), ""]
        if ex.get("citations"):
            lines += ["Sources:", ""]
            for c in ex["citations"]:
                lines.append(
                    f"{int(c['n'])}. `{c['source'].replace('`', '')}`{_pages_md(c)} characters {int(c['start'])}–{int(c['end'])}"
                    f" — {md_text(trail(c.get('section', '')))}"
                )
                lines.append(f"   > {md_text(' '.join(c['quote'].split()))}")
            lines.append("")
        elif ex.get("abstained"):
            lines += ["_(No source in the documents answers this.)_", ""]
    return "\n".join(lines).rstrip() + "\n"


# -- the documents panel ------------------------------------------------------------------------------------
def fmt_size(size: int | None) -> str:
    if size is None:
        return "missing"
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KB"
    return f"{size / 1024 / 1024:.1f} MB"


def documents_html(rows, error: str = "") -> str:
    """The collection's documents: name, type, size, chunks, when ingested, top-level headings."""
    if error:
        return f'<div class="rag-docs"><div class="rag-warn">⚠ {esc(error)}</div></div>'
    if not rows:
        return '<div class="rag-docs"><p class="rag-muted">The collection holds no documents yet.</p></div>'
    body = "".join(
        "<tr>"
        f'<td class="rag-doc-name">{esc(r.source)}</td>'
        f"<td>{esc(r.kind)}</td>"
        f'<td class="rag-num">{esc(fmt_size(r.size))}</td>'
        f'<td class="rag-num">{r.chunks:,}</td>'
        f"<td>{esc(fmt_time(r.ingested_at))}</td>"
        f'<td class="rag-doc-headings">{esc(" · ".join(r.headings)) or "<span class=rag-muted>(no headings)</span>"}</td>'
        "</tr>"
        for r in rows
    )
    return (
        '<div class="rag-docs"><table class="rag-doc-table"><thead><tr>'
        "<th>document</th><th>type</th><th>size</th><th>chunks</th><th>ingested</th><th>top-level headings</th>"
        f"</tr></thead><tbody>{body}</tbody></table></div>"
    )


_PHASES = {
    "queued": "waiting for the ingest before it",
    "checking": "checking the files",
    "reading": "reading the corpus folder",
    "embedding": "embedding",
    "finishing": "loading the new state of the collection",
}


def job_html(job) -> str:
    """A job's progress bar while it runs; its one-line summary and any refused file once it ends."""
    if job is None:
        return ""
    what = ", ".join(job.names) if job.names else "files"
    verb = "Adding" if job.action == "add" else "Removing"
    problems = "".join(f'<li class="rag-warn">⚠ {esc(p)}</li>' for p in job.problems)
    problems = f'<ul class="rag-problems">{problems}</ul>' if problems else ""
    if job.finished:
        cls = "rag-job-done" if job.ok else "rag-job-failed"
        icon = "✓" if job.ok else "⚠"
        return (
            f'<div class="rag-job {cls}" data-job="{int(job.id)}"><div class="rag-job-line">{icon} {esc(verb)} {esc(what)}: '
            f'<span class="rag-summary">{esc(job.summary)}</span></div>{problems}</div>'
        )
    pct = int(100 * job.done / job.total) if job.total else 0
    phase = _PHASES.get(job.phase, job.phase)
    count = f" {job.done:,}/{job.total:,} texts" if job.phase == "embedding" and job.total else ""
    return (
        f'<div class="rag-job rag-job-running" data-job="{int(job.id)}"><div class="rag-job-line">{esc(verb)} {esc(what)} — '
        f"{esc(phase)}{esc(count)}…</div>"
        f'<div class="rag-progress" role="progressbar" aria-valuemin="0" aria-valuemax="100" aria-valuenow="{pct}">'
        f'<div class="rag-progress-fill" style="width: {pct}%"></div></div>{problems}</div>'
    )
