"""Checkout allocation and availability rules engine.

A cart comes in; availability is gathered; YAML rules decide per line: allocate from which
location(s), reserve against a restock, or deny with reasons a shopper can be shown.
"""

__version__ = "0.1.0"
__all__ = ("__version__",)
