"""The cluster topology on loopback: Kamailio, two Asterisk nodes, two daemons (docs/cluster.md)."""
