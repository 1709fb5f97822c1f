"""The employee chat (Gradio, mounted in FastAPI with a safe source viewer). Imports gradio: load it only for `slm ui`."""
