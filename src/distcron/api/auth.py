"""Bearer-token auth for every call that changes something or reads run output.

The token is compared in constant time and never logged. A server started
without a token refuses those calls outright (403): the replica listens only on
loopback then, and a guessable "no token means open" would be a trap.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Security, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from distcron.api.context import ApiContext, Context

_bearer = HTTPBearer(
    auto_error=False,
    description="The replica's API token (DISTCRON_TOKEN), as `Authorization: Bearer <token>`.",
)

Credentials = Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)]


def check_token(context: ApiContext, credentials: HTTPAuthorizationCredentials | None) -> None:
    """Raise 403 when the server has no token, 401 when the request's is missing or wrong."""
    if context.token is None:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "this server has no API token, so it refuses changes and run output: "
            "set DISTCRON_TOKEN (or --token-file) for the replica",
        )
    given = credentials.credentials if credentials is not None else ""
    if not hmac.compare_digest(given.encode(), context.token.encode()):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing or wrong API token: send 'Authorization: Bearer <token>' "
            "(the CLI reads it from DISTCRON_TOKEN)",
            headers={"WWW-Authenticate": "Bearer"},
        )


async def token_given(context: Context, credentials: Credentials) -> bool:
    """Whether the request carries the right token (for reads that show more with it)."""
    try:
        check_token(context, credentials)
    except HTTPException:
        return False
    return True


Authorized = Annotated[bool, Depends(token_given)]


async def require_token(context: Context, credentials: Credentials) -> None:
    """The dependency of every mutating route."""
    check_token(context, credentials)
