"""Task names: what the API and `bayou ingest` send, without importing the task code."""

RASTERIZE_TASK = "bayou.rasterize"
# one document on its own: retries (fewer tiles after running out of memory, backoff after a
# transient fault) and documents handed over by a batch that could not finish
EXTRACT_TASK = "bayou.extract"
REQUEUE_STUCK_TASK = "bayou.requeue_stuck"
# the normal extraction path: messages gathered into one batched generate (celery-batches)
EXTRACT_BATCH_TASK = "bayou.extract_batch"
# a server-side batch's folder walked on `cpu` (POST /v1/batches answers before it starts)
INGEST_BATCH_TASK = "bayou.ingest_batch"
RESUME_BATCHES_TASK = "bayou.resume_batches"
# a review's score, off the API's request path (workers.review_scores)
SCORE_REVIEW_TASK = "bayou.score_review"
