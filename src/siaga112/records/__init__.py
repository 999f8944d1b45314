"""Call records in PostgreSQL: the journal and batching writer (the EventSink that never
blocks the call path), the prank/ghost policy and blocklist, and the queries behind the CLI
and the HTTP API."""
