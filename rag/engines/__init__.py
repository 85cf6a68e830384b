"""Index engines and their stores: the Engine interface and registry, FAISS + bm25s, Milvus, the index folder."""
