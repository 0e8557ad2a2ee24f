"""Look of the chat page: theme (system fonts only — nothing is fetched), CSS, and a small click helper."""
from __future__ import annotations


def theme():
    import gradio as gr

    return gr.themes.Default(
        primary_hue="indigo",
        neutral_hue="slate",
        radius_size="md",
        font=["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "DejaVu Sans", "sans-serif"],
        font_mono=["ui-monospace", "SFMono-Regular", "DejaVu Sans Mono", "monospace"],
    )


CSS = """
.gradio-container > .main { max-width: 1320px; width: 100%; margin: 0 auto; box-sizing: border-box; }
#rag-header .html-container, #rag-panel .html-container { padding: 0 !important; }
#rag-header .prose, #rag-panel .prose { margin: 0 !important; max-width: none !important; }
#rag-main { flex-wrap: nowrap; }
#rag-chat-col, #rag-side-col { min-width: 0 !important; }
#rag-header { margin-bottom: 4px; }
.rag-header { padding: 10px 2px 6px; border-bottom: 1px solid var(--border-color-primary); }
.rag-title { font-size: 1.45rem; font-weight: 700; letter-spacing: -0.01em; }
.rag-subtitle { color: var(--body-text-color-subdued); margin-top: 2px; font-size: 0.93rem; }
.rag-corpus { margin-top: 8px; display: flex; flex-wrap: wrap; gap: 6px; font-size: 0.82rem; }
.rag-corpus span { background: var(--background-fill-secondary); border: 1px solid var(--border-color-primary);
  border-radius: 999px; padding: 2px 10px; color: var(--body-text-color-subdued); }
.rag-corpus code { font-size: 0.8rem; }
.rag-warn { color: #b45309; font-weight: 600; }
.rag-corpus.rag-warn { display: block; font-size: 0.9rem; }

#rag-chat .rag-answer { line-height: 1.55; }
.rag-ref { color: var(--color-accent); font-weight: 600; font-size: 0.85em; white-space: nowrap; cursor: pointer; }
.rag-ref:hover { text-decoration: underline; }
.rag-sources, .rag-related { margin-top: 10px; padding-top: 8px; border-top: 1px dashed var(--border-color-primary);
  font-size: 0.86rem; }
.rag-sources ol, .rag-related ul { margin: 4px 0 0 0 !important; padding-left: 0 !important; list-style: none !important; }
.rag-sources li, .rag-related li { margin: 3px 0 !important; }
.rag-label { font-size: 0.72rem; font-weight: 700; text-transform: uppercase; letter-spacing: 0.06em;
  color: var(--body-text-color-subdued); }
.rag-related { opacity: 0.85; }
.rag-related .rag-label { color: #92400e; }
.rag-quote { color: var(--body-text-color-subdued); font-style: italic; }
.rag-n { color: var(--color-accent); font-weight: 700; margin-right: 2px; }
.rag-trail { font-weight: 600; }
.rag-where { color: var(--body-text-color-subdued); font-size: 0.8rem; margin-left: 4px; }
.rag-abstain { font-style: italic; }
.rag-error { color: #b91c1c; }
.rag-notice { margin-top: 6px; font-size: 0.8rem; color: var(--body-text-color-subdued); }
.rag-muted { color: var(--body-text-color-subdued); font-style: italic; }
.rag-cursor { opacity: 0.6; }
.rag-placeholder { text-align: center; color: var(--body-text-color-subdued); line-height: 1.6; }

#rag-ask-row { align-items: stretch; gap: 8px; }
#rag-tools { justify-content: flex-start; gap: 8px; }
#rag-tools > * { flex: 0 0 auto !important; min-width: 0 !important; width: auto !important; }

#rag-side-col { gap: 10px; }
#rag-sources .wrap { flex-direction: column; align-items: stretch; gap: 4px; }
#rag-sources label { font-size: 0.86rem; }
.rag-panel { border: 1px solid var(--border-color-primary); border-radius: var(--radius-lg);
  background: var(--background-fill-primary); padding: 14px 16px; }
.rag-panel-empty { color: var(--body-text-color-subdued); }
.rag-panel-title { font-weight: 700; font-size: 1.02rem; margin-bottom: 2px; }
.rag-panel-where { font-size: 0.8rem; color: var(--body-text-color-subdued); margin-bottom: 10px; }
.rag-file { font-family: var(--font-mono); }
.rag-table-header { font-size: 0.8rem; margin-bottom: 6px; font-family: var(--font-mono); white-space: pre-wrap; }
.rag-para { white-space: pre-wrap; line-height: 1.6; font-size: 0.92rem; max-height: 520px; overflow-y: auto; }
.rag-para mark { background: #fde68a; color: #111827; padding: 1px 2px; border-radius: 3px; }
.rag-page { font-weight: 600; }
.rag-code, pre.rag-code { font-family: var(--font-mono); font-size: 0.85rem; white-space: pre; overflow-x: auto; }
pre.rag-code { background: var(--background-fill-secondary); border: 1px solid var(--border-color-primary);
  border-radius: var(--radius-md); padding: 6px 8px; margin: 4px 0; display: block; }

#rag-docs .html-container, #rag-job .html-container { padding: 0 !important; }
#rag-docs .prose, #rag-job .prose { max-width: none !important; }
.rag-doc-table { width: 100%; border-collapse: collapse; font-size: 0.86rem; }
.rag-doc-table th { text-align: left; font-size: 0.72rem; text-transform: uppercase; letter-spacing: 0.05em;
  color: var(--body-text-color-subdued); border-bottom: 1px solid var(--border-color-primary); padding: 4px 6px; }
.rag-doc-table td { border-bottom: 1px solid var(--border-color-primary); padding: 5px 6px; vertical-align: top; }
.rag-doc-name { font-family: var(--font-mono); word-break: break-all; }
.rag-num { text-align: right; white-space: nowrap; }
.rag-doc-headings { color: var(--body-text-color-subdued); }
.rag-job { margin: 6px 0; font-size: 0.9rem; }
.rag-job-done .rag-job-line { color: #15803d; }
.rag-job-failed .rag-job-line { color: #b45309; }
.rag-problems { margin: 4px 0 0 0 !important; padding-left: 0 !important; list-style: none !important; }
.rag-progress { height: 10px; border-radius: 999px; background: var(--background-fill-secondary);
  border: 1px solid var(--border-color-primary); overflow: hidden; margin-top: 6px; }
.rag-progress-fill { height: 100%; background: var(--color-accent); transition: width 0.3s; }
"""

# Clicking a [n] marker in the latest answer picks that source in the list beside the chat.
HEAD_JS = """
<script>
document.addEventListener("click", (event) => {
  const ref = event.target.closest && event.target.closest(".rag-ref");
  if (!ref) return;
  const answers = document.querySelectorAll("#rag-chat .rag-answer");
  if (!answers.length || !answers[answers.length - 1].contains(ref)) return;
  const label = ref.textContent.trim();
  for (const option of document.querySelectorAll("#rag-sources label")) {
    if (option.textContent.trim().startsWith(label + " ")) {
      const input = option.querySelector("input");
      if (input) { input.click(); }
      return;
    }
  }
});
</script>
"""
