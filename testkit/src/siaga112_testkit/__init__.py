"""siaga112-testkit: the tools that test Siaga112 and are no part of it: the SIPp phones
(sipp.py) and their pcaps (dtmf_pcap.py), the load test and the bench (loadtest/), the local
stack (devstack/: the test PBX, PostgreSQL, Mosquitto) and the test PBX's addresses
(topology.py). Its command is `siaga112-testkit`; it runs from a checkout (editable install)."""
