"""The web layer: the REST API (api.py), the chat page (chat.py, the only importer of gradio) and what it renders (render.py)."""
