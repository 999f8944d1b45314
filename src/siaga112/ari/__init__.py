"""Our own thin ARI client on aiohttp: REST calls with typed errors (client.py), the events
websocket with reconnect and backoff (events.py), and pydantic models of what we use (models.py)."""
