"""Pomoc: real-time support chat for e-commerce shop admin panels."""
