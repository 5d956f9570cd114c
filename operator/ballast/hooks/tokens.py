"""Each call carries a TokenRequest token of the operator's own ServiceAccount, its audience the webhook's URL.

No Secret is involved: the receiver checks the token with a TokenReview naming its own URL as the audience,
so a token sent to one webhook is worthless at another. Tokens are kept per audience until half their life.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ballast.kube.client import KubeApi
from ballast.kube.resources import SELF_SUBJECT_REVIEWS, SERVICE_ACCOUNTS

TOKEN_SECONDS = 600
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"


class TokenError(Exception):
    """No token could be minted: the call is not made, and counts as the gate failing to answer."""


class ServiceAccountTokens:
    def __init__(self, api: KubeApi, clock: Callable[[], float] = time.monotonic) -> None:
        self.api = api
        self.clock = clock
        self.account: tuple[str, str] | None = None
        self.kept: dict[str, tuple[str, float]] = {}  # audience -> (token, renew after)

    async def token(self, audience: str) -> str:
        kept = self.kept.get(audience)
        if kept is not None and self.clock() < kept[1]:
            return kept[0]
        namespace, name = await self._account()
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"audiences": [audience], "expirationSeconds": TOKEN_SECONDS}}  # fmt: skip
        answer = await self.api.create_subresource(SERVICE_ACCOUNTS, namespace, name, "token", body)
        token = str(answer["status"]["token"])
        self.kept[audience] = (token, self.clock() + TOKEN_SECONDS / 2)
        return token

    async def _account(self) -> tuple[str, str]:
        """Who the operator is, asked once (a SelfSubjectReview needs no permission)."""
        if self.account is None:
            review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
            answer = await self.api.create(SELF_SUBJECT_REVIEWS, "", review)
            username = str(answer.get("status", {}).get("userInfo", {}).get("username", ""))
            if not username.startswith(SERVICE_ACCOUNT_PREFIX):
                raise TokenError(f"the operator runs as {username!r}, not a ServiceAccount: it cannot mint tokens")
            namespace, _, name = username.removeprefix(SERVICE_ACCOUNT_PREFIX).partition(":")
            self.account = (namespace, name)
        return self.account
