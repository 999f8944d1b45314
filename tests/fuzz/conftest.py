"""The fuzz suite: property-based tests (hypothesis) of everything the daemon reads from
outside: caller IDs, the HTTP API's bodies, queries and path parameters, agencies' MQTT
messages, ARI events and channel variables, journal and fallback-journal lines.

Each test runs `strategies.FUZZ` (10,000 cases unless SIAGA112_FUZZ_EXAMPLES says otherwise),
derandomized (the same cases on every run, so a failure reproduces) and with no example
database in the tree. Pure functions and fakes only: no stack, no network but loopback.
`pytest tests/fuzz --hypothesis-show-statistics` prints how many cases each test ran.
"""
