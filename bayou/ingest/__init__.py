"""`bayou ingest`: record every supported file of a local folder once and hand it to the workers.

No server is needed: files are checked with the same cheap look as an upload (`bayou.intake`),
stored with `storage` (blob, then row) and enqueued with the function the API uses. The database's
content dedupe makes a re-run safe, so the only state kept is in memory.
"""
