"""On-disk indexes of the knowledge base: dense (FAISS), sparse (BM25) and the generation that binds them."""
