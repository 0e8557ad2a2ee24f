"""The browser chat UI: `python -m ui`, or build_app(assistant, feedback_path=...) to embed or test it."""
from .app import ChatController, build_app, new_conversation

__all__ = ["ChatController", "build_app", "new_conversation"]
