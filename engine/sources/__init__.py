"""Availability sources, one module per upstream: each implements `engine.availability.Source`."""

from engine.availability.source import Source, SourceAnswer

__all__ = ("Source", "SourceAnswer")
