"""Siaga112: 112 emergency call handling on Asterisk ARI."""

__version__ = "0.1.0"
