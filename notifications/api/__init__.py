"""Clarion's versioned REST API (v1)."""
