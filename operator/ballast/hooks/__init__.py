"""Webhook gates and notifications over httpx: outbound safety, tokens, payloads, one call's outcome."""

from ballast.hooks.caller import CallResult, WebhookCaller
from ballast.hooks.outbound import OutboundPolicy, OutboundRefused
from ballast.hooks.payload import webhook_payload
from ballast.hooks.tokens import ServiceAccountTokens

__all__ = [
    "CallResult",
    "OutboundPolicy",
    "OutboundRefused",
    "ServiceAccountTokens",
    "WebhookCaller",
    "webhook_payload",
]
