"""The access log without secrets: method, path (never the query string), status, size and time.

aiohttp's default format logs the request line with its query and the Referer header; the WebSocket
upgrade may carry `?token=`, and the web page's own URL (`/?token=...`) becomes the Referer of every
request it makes. So neither is ever logged here.
"""

from __future__ import annotations

import logging

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse


class RedactedAccessLogger(AbstractAccessLogger):
    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        self.logger.info("%s %s %s %d %d %.1fms", request.remote, request.method, request.path,
                         response.status, response.body_length, time * 1000)
