"""Every failure inside a handler ends as a 4xx with a reason or a logged 500 without a traceback to the
client; a client that went away costs one log line, not a traceback."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

log = logging.getLogger(__name__)

# Raised while reading a request or writing the answer when the client is gone (aiohttp's
# ClientConnectionResetError is a ConnectionResetError).
CLIENT_GONE = (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)


@web.middleware
async def contain_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException:
        raise  # an answer already (4xx with its reason, a redirect, ...)
    except CLIENT_GONE as e:
        log.info("%s %s: client %s went away (%s)", request.method, request.path, request.remote, type(e).__name__)
        # Nobody reads this; aiohttp drops it quietly when the write fails.
        return web.json_response({"error": "client went away"}, status=400)
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return web.json_response({"error": "internal error; see the server log"}, status=500)
