"""Load tests and benchmarks of the call path with SIPp: `siaga112 load-test`, `siaga112 bench`."""
