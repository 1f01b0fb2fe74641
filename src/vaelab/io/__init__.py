"""Filesystem helpers shared by every stage."""
