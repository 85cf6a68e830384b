"""Serving: the Service behind the app, the data folder, feedback and the web layer (web/)."""
