"""Load tests and benchmarks of the call path with SIPp: `siaga112-testkit load-test`,
`siaga112-testkit bench`."""
