"""One module per outside system: MongoDB (store), Redis (published: the read model;
cache: per-tenant aggregates), Milvus (memory) and the language identifier (language)."""
