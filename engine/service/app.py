"""The Litestar application: routes, strict request decoding, and problem+json errors.

Request bodies are decoded by msgspec in strict mode (`"5"` is not `5`) through `StrictDTO`,
so the generated OpenAPI still describes the `Cart` struct. Handlers are closures over one
`Checkout`, so no per-request dependency resolution sits on the hot path.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Final

import msgspec
from litestar import Litestar, MediaType, Response, get, post
from litestar.dto import MsgspecDTO
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Reference, Schema
from litestar.params import Body, QueryParameter
from litestar.typing import FieldDefinition

from engine import __version__
from engine.checkout import Checkout
from engine.countries import CountryCode
from engine.model import CHANNEL_PATTERN, MAX_LINES, AvailabilityAnswer, Cart, Decision, Sku
from engine.service.problems import MAX_BODY_BYTES, decode_error, exception_handlers

if TYPE_CHECKING:
    from litestar._openapi.schema_generation import SchemaCreator

__all__ = ("MAX_BODY_BYTES", "create_app")


_CART_DECODER: Final = msgspec.json.Decoder(Cart)


class StrictDTO(MsgspecDTO[Cart]):
    """Decode the body with a strict msgspec decoder; describe it in OpenAPI as `Cart`."""

    def decode_bytes(self, value: bytes) -> Any:
        try:
            return _CART_DECODER.decode(value)
        except msgspec.DecodeError as exc:
            raise decode_error(exc) from None

    @classmethod
    def create_openapi_schema(
        cls, field_definition: FieldDefinition, handler_id: str, schema_creator: SchemaCreator
    ) -> Reference | Schema:
        return schema_creator.for_field_definition(FieldDefinition.from_annotation(Cart))


def create_app(
    checkout: Checkout,
    *,
    debug: bool = False,
    on_shutdown: Sequence[Callable[[], Awaitable[Any]]] = (),
) -> Litestar:
    """Build the app around one `Checkout` (its rule set may be replaced while running).
    `on_shutdown` closes what the checkout's sources hold open (the upstream HTTP client)."""

    @post(
        "/v1/allocations",
        dto=StrictDTO,
        return_dto=None,
        status_code=200,
        summary="Decide a cart",
        description="Allocate, reserve or deny each line of a cart, with reasons. "
        "`explain=true` adds, per line, every location considered and the rule behind "
        "each setting.",
        tags=["decisions"],
    )
    async def allocations(
        data: Annotated[Cart, Body(title="Cart", description="The lines and where they go")],
        explain: Annotated[bool, QueryParameter(description="Add explanations")] = False,
    ) -> Decision:
        return await checkout.allocate(data, explain=explain)

    @get(
        "/v1/availability",
        summary="Availability of SKUs for a destination",
        tags=["availability"],
    )
    async def availability(
        sku: Annotated[
            list[Sku],
            QueryParameter(min_items=1, max_items=MAX_LINES, description="Repeat for several SKUs"),
        ],
        country: Annotated[CountryCode, QueryParameter(description="ISO 3166-1 alpha-2")],
        channel: Annotated[
            str | None,
            QueryParameter(pattern=CHANNEL_PATTERN, max_length=40, description="Sales channel"),
        ] = None,
    ) -> AvailabilityAnswer:
        return await checkout.availability(sku, country, channel)

    @get("/v1/rules", summary="The active rule set", tags=["rules"])
    async def rules() -> Response[bytes]:
        return Response(msgspec.json.encode(checkout.rules.describe()), media_type=MediaType.JSON)

    @get(
        "/v1/sources",
        summary="Availability sources: cache, upstream and breaker counters",
        tags=["operations"],
    )
    async def sources() -> Response[bytes]:
        return Response(msgspec.json.encode(checkout.stats()), media_type=MediaType.JSON)

    @get("/health", summary="Liveness", tags=["operations"])
    async def health() -> dict[str, str]:
        return {"status": "ok", "rule_set": checkout.rules.id}

    return Litestar(
        route_handlers=[allocations, availability, rules, sources, health],
        exception_handlers=exception_handlers,
        request_max_body_size=MAX_BODY_BYTES,
        on_shutdown=list(on_shutdown),
        openapi_config=OpenAPIConfig(
            title="Checkout allocation engine", version=__version__, path="/schema"
        ),
        debug=debug,
    )
