"""The HTTP service: a Litestar app over `engine.checkout.Checkout`."""

from engine.service.app import MAX_BODY_BYTES, create_app

__all__ = ("MAX_BODY_BYTES", "create_app")
