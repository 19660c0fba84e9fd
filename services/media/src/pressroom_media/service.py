"""How ``pressroom dev`` finds and runs the media service."""

from importlib import resources

from pressroom_kit.service import ServiceSpec


def _projections():  # type: ignore[no-untyped-def]
    from pressroom_media.projections import MEDIA

    return [MEDIA]


SERVICE = ServiceSpec(
    name="media",
    module="pressroom_media",
    port=8101,
    database="pressroom_media",
    migrations=resources.files("pressroom_media") / "migrations",
    projections=_projections,
    prefixes=("/v1/media", "/media-files"),
)
