"""Answering: the Assistant, the reader family, extractive composition, follow-ups, the language model."""
