"""Search: the Retriever façade, fusion of dense and keyword candidates, stages, duplicates, updates."""
