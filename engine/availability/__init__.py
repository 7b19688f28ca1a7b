"""Gathering availability for a cart: the only step of a decision that does I/O."""

from engine.availability.gather import gather, merge_answers
from engine.availability.record import Availability, StockRecord
from engine.availability.source import Source, SourceAnswer

__all__ = ("Availability", "Source", "SourceAnswer", "StockRecord", "gather", "merge_answers")
