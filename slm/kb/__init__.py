"""The knowledge base: sources (connectors) and loaders, documents, chunking, the SQLite store,
ingestion, embedders, indexes, and the local and shared (pgvector) readers."""
