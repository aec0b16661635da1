"""The core library: documents in, validated JSON out. No web, no queue, no database."""
