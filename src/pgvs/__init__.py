"""pgvs: PostgreSQL + pgvector as a fast, safe, complete vector store."""
