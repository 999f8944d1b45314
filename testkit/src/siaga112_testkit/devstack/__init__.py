"""The local stack for development, tests and benchmarks: the test PBX (a real Asterisk 22),
PostgreSQL and Mosquitto, each installed when missing and started on loopback by the project.
Every process it starts is stopped by its pid, never by its name."""
