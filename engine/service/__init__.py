"""The HTTP service: a Litestar app over `engine.checkout.Checkout`."""

from engine.service.app import create_app

__all__ = ("create_app",)
