"""Python SDK for channels that publish to Kafka directly."""

from services.sdk.producer import PublishError, TouchstreamProducer

__all__ = ["PublishError", "TouchstreamProducer"]
