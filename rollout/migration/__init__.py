"""Getting embeddings into a version's table: bulk loading, backfill, verification, importers."""
