"""The browser chat: a ChatController holding the handlers (testable without a browser) and build_app()."""
import json
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from assistant.errors import CiteError

from . import render
from .errors import UNEXPECTED, error_line  # noqa: F401  (UNEXPECTED is part of the page's API)
from .documents import UPLOAD_TYPES, DocumentLibrary, corpus_title, example_questions
from .style import CSS, HEAD_JS, theme

def new_conversation() -> dict:
    """One browser session's conversation: the turns the assistant sees, and what the chat shows."""
    return {"turns": [], "exchanges": []}


@dataclass
class Step:
    """One update of a streamed reply."""

    messages: list[dict]  # the Chatbot value (escaped HTML)
    conversation: dict  # the session's conversation after this step
    text: str = ""  # the plain answer text so far
    done: bool = False
    sources: list[dict] = field(default_factory=list)  # citations of the finished answer
    error: str = ""  # one line when the question could not be answered
    panel: str | None = None  # on the final step: the panel (the first source, or empty)


class ChatController:
    """Everything the page does, as plain methods over a per-session conversation dict."""

    def __init__(
        self,
        assistant,
        *,
        feedback_path: Path,
        title: str | None = None,
        export_dir: Path | None = None,
        library: DocumentLibrary | None = None,
    ):
        self.assistant = assistant
        self.feedback_path = Path(feedback_path)
        self.library = library or DocumentLibrary(assistant, uploads=False)
        self._title = title.strip() if isinstance(title, str) and title.strip() else None
        self.export_dir = Path(export_dir) if export_dir else Path(tempfile.mkdtemp(prefix="rag-ui-export-"))
        self.export_dir.mkdir(parents=True, exist_ok=True)
        self._feedback_lock = threading.Lock()

    # -- header ---------------------------------------------------------------------------------------
    @property
    def title(self) -> str:
        """--title / RAG_UI_TITLE, else one made from the corpus (see documents.corpus_title)."""
        return self._title or corpus_title(self.library)

    def examples(self) -> tuple[str, ...]:
        return example_questions(self.library)

    def corpus_info(self):
        """(CorpusInfo, "") or (None, one-line error)."""
        try:
            return self.assistant.corpus_info(), ""
        except Exception as err:  # noqa: BLE001 - any failure becomes one line in the header
            return None, error_line(err, "corpus_info")

    def header_html(self) -> str:
        info, error = self.corpus_info()
        return render.header_html(self.title, info, error)

    def documents_view(self) -> tuple[str, list[str]]:
        """The documents table, and the sources that can be removed."""
        try:
            rows = self.library.documents()
        except Exception as err:  # noqa: BLE001 - a missing store is one line in the panel
            return render.documents_html([], error_line(err, "documents")), []
        return render.documents_html(rows), [r.source for r in rows]

    # -- answering ------------------------------------------------------------------------------------
    def respond(self, question: str, conversation: dict | None) -> Iterator[Step]:
        """Stream the answer to a question, given this session's conversation; never raises."""
        conv = _copy(conversation)
        question = question if isinstance(question, str) else ""
        exchanges = conv["exchanges"]
        yield Step(render.chat_messages(exchanges, (question, "")), conv)
        text, answer = "", None
        try:
            for event in self.assistant.stream(question, list(conv["turns"])):
                text = event.text
                if event.done:
                    answer = event.answer
                    break
                yield Step(render.chat_messages(exchanges, (question, text)), conv, text)
            if answer is None:
                raise RuntimeError("the answer stream ended without an answer")
        except Exception as err:  # noqa: BLE001 - the page must keep serving
            line = error_line(err, "respond")
            exchanges.append({"question": question, "error": line})
            yield Step(render.chat_messages(exchanges), conv, "", True, [], line, render.PANEL_EMPTY)
            return
        try:  # keep the question as the assistant read it (spaces and control characters tidied)
            from assistant.clean import clean_question

            question = clean_question(question, self.assistant.settings.max_question_chars)
        except Exception:  # noqa: BLE001 - a backend may accept what clean_question would not
            pass
        ex = {"question": question, **answer.to_dict()}
        self._mark_kinds(ex["citations"])
        exchanges.append(ex)
        conv["turns"] += [{"role": "user", "content": question}, {"role": "assistant", "content": answer.text}]
        panel = self.panel_for(ex["citations"][0]) if ex["citations"] else render.PANEL_EMPTY
        yield Step(render.chat_messages(exchanges), conv, answer.text, True, ex["citations"], "", panel)

    def _mark_kinds(self, citations: list[dict]) -> None:
        """Give each citation the kind of its unit ("code" is shown preformatted)."""
        for c in citations:
            try:
                c["kind"] = self.library.unit_kind(c["chunk_id"], int(c["start"]), int(c["end"]))
            except Exception:  # noqa: BLE001 - the store is away: the citation is shown as prose
                return

    # -- sources --------------------------------------------------------------------------------------
    @staticmethod
    def source_choices(conversation: dict | None) -> list[tuple[str, str]]:
        """Options for the latest answer's sources: (label, "exchange:n")."""
        exchanges = (conversation or {}).get("exchanges") or []
        if not exchanges:
            return []
        i = len(exchanges) - 1
        return [(render.source_choice(c), f"{i}:{c['n']}") for c in exchanges[i].get("citations") or []]

    def select_source(self, conversation: dict | None, key: str | None) -> str:
        """The side panel for a source key "exchange:n" (or a bare n for the latest answer)."""
        citation = _find_citation(conversation, key)
        if citation is None:
            return render.PANEL_EMPTY
        return self.panel_for(citation)

    def panel_for(self, c: dict) -> str:
        from assistant.cite import passage

        try:
            p = passage(self.assistant.settings.corpus_dirs, c["source"], int(c["start"]), int(c["end"]))
        except CiteError as err:
            return render.panel_html(c, None, warning=render.public_message(f"{err} — showing the stored quote"))
        except Exception as err:  # noqa: BLE001
            return render.panel_message(error_line(err, "select_source"))
        if p.quote != c["quote"]:
            return render.panel_html(
                c, None, warning="the file changed since it was ingested — re-run `make ingest`; showing the stored quote"
            )
        return render.panel_html(c, p.paragraph, p.paragraph_start, pages=p.pages)

    # -- export and feedback ----------------------------------------------------------------------------
    def export_markdown(self, conversation: dict | None) -> str:
        info, error = self.corpus_info()
        if info is not None:
            corpus = (
                f"Corpus: {render.plural(info.documents, 'document')}, {render.plural(info.chunks, 'passage')}, "
                f"ingested {render.fmt_time(info.ingested_at)}."
            )
        else:
            corpus = f"Corpus: unavailable ({error})."
        when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        return render.export_markdown(self.title, (conversation or {}).get("exchanges") or [], corpus, when)

    def export(self, conversation: dict | None) -> Path | None:
        """Write the conversation as Markdown to a fresh file; None when there is nothing to export."""
        if not (conversation or {}).get("exchanges"):
            return None
        self._prune_exports()
        folder = Path(tempfile.mkdtemp(dir=self.export_dir))
        path = folder / f"conversation-{datetime.now():%Y%m%d-%H%M%S}.md"
        path.write_text(self.export_markdown(conversation), encoding="utf-8")
        return path

    def _prune_exports(self, max_age_s: float = 86400) -> None:
        """Drop export files older than a day (one is written after every answer)."""
        cutoff = time.time() - max_age_s
        for folder in self.export_dir.iterdir():
            try:
                if folder.is_dir() and folder.stat().st_mtime < cutoff:
                    shutil.rmtree(folder, ignore_errors=True)
            except OSError:
                pass

    def vote(self, conversation: dict | None, index, liked) -> dict | None:
        """Append one feedback line for the answer at chat message `index`; returns the record written."""
        if isinstance(index, (list, tuple)):
            index = index[0]
        exchanges = (conversation or {}).get("exchanges") or []
        try:
            ex = exchanges[int(index) // 2]
        except (TypeError, ValueError, IndexError):
            return None
        if liked is True or liked == "Like":
            vote = "up"
        elif liked is False or liked == "Dislike":
            vote = "down"
        else:
            vote = str(liked or "cleared")
        record = {
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "vote": vote,
            "question": ex.get("question", ""),
            "answer": ex.get("answer", "") or ex.get("error", ""),
            "citations": list(ex.get("citations") or []),  # as Answer.to_dict wrote them
        }
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with self._feedback_lock:
            self.feedback_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.feedback_path, "a", encoding="utf-8") as f:
                f.write(line)
        return record

    # -- the public API -----------------------------------------------------------------------------------
    def ask(self, question: str, history: Any = None) -> dict:
        """Structured answer for API clients; raises ValueError-like errors with one line."""
        turns = _history(history)
        return self.assistant.ask(question, turns).to_dict()


class HistoryError(ValueError):
    """The history given to the API is not a list of {role, content} objects."""


def _history(history: Any) -> list[dict]:
    if history in (None, "", []):
        return []
    if isinstance(history, str):
        try:
            history = json.loads(history)
        except ValueError:
            raise HistoryError("history must be JSON: a list of {\"role\", \"content\"} objects") from None
    if not isinstance(history, list):
        raise HistoryError("history must be a list of {\"role\", \"content\"} objects")
    out = []
    for item in history:
        if not isinstance(item, dict) or item.get("role") not in ("user", "assistant"):
            raise HistoryError("each history item must be {\"role\": \"user\"|\"assistant\", \"content\": text}")
        content = item.get("content")
        out.append({"role": item["role"], "content": content if isinstance(content, str) else str(content or "")})
    return out


def _copy(conversation: dict | None) -> dict:
    conv = conversation if isinstance(conversation, dict) else {}
    return {"turns": list(conv.get("turns") or []), "exchanges": list(conv.get("exchanges") or [])}


def _find_citation(conversation: dict | None, key) -> dict | None:
    exchanges = (conversation or {}).get("exchanges") or []
    if key is None or not exchanges:
        return None
    key = str(key)
    try:
        if ":" in key:
            i, n = (int(part) for part in key.split(":", 1))
        else:
            i, n = len(exchanges) - 1, int(key)
        ex = exchanges[i]
    except (ValueError, IndexError):
        return None
    return next((c for c in ex.get("citations") or [] if int(c["n"]) == n), None)


# -- the Gradio app -------------------------------------------------------------------------------------
def _blocks_class():
    import gradio as gr

    class AssistantBlocks(gr.Blocks):
        """Blocks whose launch() brings the app's theme, CSS and script unless the caller gives others."""

        max_upload_bytes: int | None = None

        def launch(self, *args, **kwargs):  # noqa: D102
            kwargs.setdefault("theme", theme())
            kwargs.setdefault("css", CSS)
            kwargs.setdefault("head", HEAD_JS)
            kwargs.setdefault("footer_links", ["api"])
            if self.max_upload_bytes:  # a hard cap on what reaches the disk; the page's own check is finer
                kwargs.setdefault("max_file_size", self.max_upload_bytes)
            return super().launch(*args, **kwargs)

    return AssistantBlocks


NO_UPLOADS = "Adding and removing documents is turned off on this server (--no-uploads / RAG_UI_UPLOADS=0)."


def build_app(
    assistant,
    *,
    feedback_path: Path,
    title: str | None = None,
    uploads: bool = True,
    max_file_mb: float | None = None,
):
    """The chat page, and its Documents tab, over a ready Assistant; the caller launches it.

    title: None makes one from the corpus. uploads: False lists the documents only."""
    import gradio as gr

    library = DocumentLibrary(assistant, uploads=uploads, max_file_mb=max_file_mb)
    ctl = ChatController(assistant, feedback_path=feedback_path, title=title, library=library)
    private = {"api_visibility": "private"}
    answering = {"concurrency_limit": 2, "concurrency_id": "assistant"}
    documenting = {"concurrency_limit": 8, "concurrency_id": "documents"}
    examples = ctl.examples()
    if examples:
        placeholder = (
            "<div class='rag-placeholder'><b>Ask about the documents.</b><br>"
            "Answers quote the documents and cite each passage; try one of these:</div>"
        )
    else:
        placeholder = (
            "<div class='rag-placeholder'><b>Ask about the documents.</b><br>"
            "Answers quote the documents and cite each passage.</div>"
        )

    blocks = _blocks_class()
    with blocks(title=ctl.title, fill_width=True, analytics_enabled=False, delete_cache=(3600, 86400)) as app:
        app.controller = ctl  # for tests and scripts
        app.library = library
        app.max_upload_bytes = int(library.max_file_mb * 4 * 1024 * 1024) if uploads else None
        conversation = gr.State(new_conversation())
        header = gr.HTML(ctl.header_html(), elem_id="rag-header")
        with gr.Tabs(elem_id="rag-tabs"):
            with gr.Tab("Chat", id="chat", elem_id="rag-tab-chat"):
                with gr.Row(equal_height=False, elem_id="rag-main"):
                    with gr.Column(scale=3, min_width=420, elem_id="rag-chat-col"):
                        chatbot = gr.Chatbot(
                            elem_id="rag-chat",
                            show_label=False,
                            height=560,
                            render_markdown=False,  # every message is escaped HTML built by ui.render
                            sanitize_html=True,
                            allow_tags=False,
                            latex_delimiters=[],
                            feedback_options=("Like", "Dislike"),
                            buttons=[],  # "copy" would copy the message's HTML, not its text
                            layout="panel",
                            placeholder=placeholder,
                            examples=[{"text": q} for q in examples] or None,
                        )
                        with gr.Row(elem_id="rag-ask-row"):
                            question = gr.Textbox(
                                show_label=False,
                                placeholder="Ask a question about the documents…",
                                lines=1,
                                max_lines=4,
                                scale=8,
                                autofocus=True,
                                elem_id="rag-question",
                            )
                            send = gr.Button("Ask", variant="primary", scale=1, min_width=80, elem_id="rag-send")
                        with gr.Row(elem_id="rag-tools"):
                            new_chat = gr.Button("New chat", size="sm", variant="secondary", elem_id="rag-new")
                            export = gr.DownloadButton(
                                "Export (.md)", size="sm", variant="secondary", interactive=False, elem_id="rag-export"
                            )
                    with gr.Column(scale=2, min_width=320, elem_id="rag-side-col"):
                        sources = gr.Radio(
                            choices=[],
                            label="Sources of the latest answer",
                            info="Pick one to read it in its paragraph.",
                            elem_id="rag-sources",
                            visible=False,
                        )
                        panel = gr.HTML(render.PANEL_EMPTY, elem_id="rag-panel")
            with gr.Tab("Documents", id="documents", elem_id="rag-tab-docs"):
                docs = gr.HTML(elem_id="rag-docs")
                if uploads:
                    with gr.Row(equal_height=False, elem_id="rag-doc-tools"):
                        with gr.Column(scale=3, min_width=320):
                            files = gr.File(
                                label=f"Add files ({', '.join(UPLOAD_TYPES)}; up to {library.max_file_mb:g} MB each)",
                                file_count="multiple",
                                file_types=list(UPLOAD_TYPES),
                                type="filepath",
                                elem_id="rag-upload",
                            )
                            with gr.Row():
                                replace = gr.Checkbox(
                                    False, label="Replace files with the same name", elem_id="rag-replace"
                                )
                                add = gr.Button("Add to the collection", variant="primary", elem_id="rag-add")
                        with gr.Column(scale=2, min_width=260):
                            pick = gr.Dropdown(
                                choices=[], label="Remove a document", value=None, elem_id="rag-remove-pick"
                            )
                            remove = gr.Button("Remove it", variant="stop", elem_id="rag-remove")
                else:
                    gr.HTML(f'<div class="rag-muted">{render.esc(NO_UPLOADS)}</div>', elem_id="rag-no-uploads")
                job_box = gr.HTML("", elem_id="rag-job")
        known = gr.State(library.generation)
        timer = gr.Timer(3.0)

        # -- handlers: thin wrappers from Steps to component updates ----------------------------------
        def on_ask(q, conv):
            for i, step in enumerate(ctl.respond(q, conv)):
                if not step.done:
                    if i == 0:  # clear the box once (later steps leave what the user types next alone)
                        hide = gr.update(visible=False, choices=[], value=None)
                        yield step.messages, step.conversation, hide, gr.update(), "", gr.update()
                    else:
                        yield step.messages, step.conversation, gr.update(), gr.update(), gr.update(), gr.update()
                    continue
                choices = ctl.source_choices(step.conversation)
                radio = gr.update(
                    choices=choices, value=choices[0][1] if choices else None, visible=bool(choices)
                )
                path = ctl.export(step.conversation)
                download = gr.update(value=str(path) if path else None, interactive=path is not None)
                yield step.messages, step.conversation, radio, step.panel, gr.update(), download

        ask_outputs = [chatbot, conversation, sources, panel, question, export]
        for trigger in (question.submit, send.click):
            trigger(on_ask, [question, conversation], ask_outputs, **private, **answering)

        def on_example(evt: gr.SelectData):
            value = evt.value if isinstance(evt.value, dict) else {}
            return value.get("text", "")

        chatbot.example_select(on_example, None, question, **private).then(
            on_ask, [question, conversation], ask_outputs, **private, **answering
        )

        def on_select(conv, key):
            return ctl.select_source(conv, key)

        sources.input(on_select, [conversation, sources], panel, **private, concurrency_limit=None)

        def on_like(conv, evt: gr.LikeData):
            try:
                record = ctl.vote(conv, evt.index, evt.liked)
            except OSError as err:
                print(f"ui: cannot write feedback to {ctl.feedback_path}: {err}", file=sys.stderr)
                gr.Warning(f"Could not save the feedback ({type(err).__name__}).")
                return
            if record is not None:
                gr.Info("Thanks — your feedback was saved.")

        chatbot.like(on_like, [conversation], None, **private, concurrency_limit=None)

        def on_new():
            return (
                [],
                new_conversation(),
                gr.update(choices=[], value=None, visible=False),
                render.PANEL_EMPTY,
                "",
                gr.update(value=None, interactive=False),
            )

        new_chat.click(on_new, None, ask_outputs, **private, concurrency_limit=None)
        chatbot.clear(on_new, None, ask_outputs, **private, concurrency_limit=None)

        # -- documents -----------------------------------------------------------------------------------
        def refreshed():
            """Header, documents table, removal choices and the state generation, as they are now."""
            generation = library.generation
            html, sources_now = ctl.documents_view()
            return ctl.header_html(), html, gr.update(choices=sources_now, value=None), generation

        if uploads:
            view_outputs = [header, docs, pick, known]

            def follow(job, clear_files: bool):
                """The job's progress bar until it ends, then its summary and the new state of the page."""
                tail = (None,) if clear_files else ()
                while job is not None and not job.finished:
                    yield (render.job_html(job),) + (gr.skip(),) * (len(view_outputs) + len(tail))
                    time.sleep(0.3)
                    job = library.job(job.id)
                yield (render.job_html(job),) + refreshed() + tail

            def on_add(paths, replace_existing):
                paths = [p for p in (paths or []) if p]
                if not paths:
                    yield ('<div class="rag-job rag-warn">⚠ Choose one or more files first.</div>',) + (
                        gr.skip(),
                    ) * (len(view_outputs) + 1)
                    return
                job = library.add([(str(p), Path(str(p)).name) for p in paths], bool(replace_existing))
                yield from follow(job, True)

            def on_remove(source):
                if not source:
                    yield ('<div class="rag-job rag-warn">⚠ Pick a document to remove first.</div>',) + (
                        gr.skip(),
                    ) * len(view_outputs)
                    return
                yield from follow(library.remove(str(source)), False)

            job_outputs = [job_box, *view_outputs, files]
            add.click(on_add, [files, replace], job_outputs, **private, **documenting)
            remove.click(on_remove, [pick], [job_box, *view_outputs], **private, **documenting)

            def on_tick(seen):
                if seen == library.generation:
                    return (gr.skip(),) * len(view_outputs)
                return refreshed()

            timer.tick(on_tick, [known], view_outputs, **private, concurrency_limit=None, show_progress="hidden")

            def on_load():
                return refreshed()

            app.load(on_load, None, view_outputs, **private, concurrency_limit=None)
        else:
            def on_tick_readonly(seen):
                if seen == library.generation:
                    return gr.skip(), gr.skip(), gr.skip()
                header_html, html, _, generation = refreshed()
                return header_html, html, generation

            timer.tick(on_tick_readonly, [known], [header, docs, known], **private, concurrency_limit=None,
                       show_progress="hidden")

            def on_load_readonly():
                header_html, html, _, generation = refreshed()
                return header_html, html, generation

            app.load(on_load_readonly, None, [header, docs, known], **private, concurrency_limit=None)

        def ask(question: str, history: list[dict]) -> dict:
            """Answer a question with verified citations. history: earlier turns as [{"role", "content"}], may be []."""
            try:
                return ctl.ask(question, history)
            except HistoryError as err:
                raise gr.Error(str(err), print_exception=False) from None
            except Exception as err:  # noqa: BLE001 - one line for the client, traceback to stderr
                raise gr.Error(error_line(err, "api ask"), print_exception=False) from None

        gr.api(ask, api_name="ask", **answering)
    return app
