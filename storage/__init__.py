"""Persistence for the service: SQLAlchemy models, Alembic migrations, the blob store and the few
operations that `api` and `workers` need. `extractor` never imports this package."""
