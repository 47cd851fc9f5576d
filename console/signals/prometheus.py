"""The Prometheus provider: instant queries (``/api/v1/query``) off the engine's loop.

A query runs in a worker thread (stdlib ``urllib``: no new dependency, and one query
per metric and cohort each analysis interval is far from needing a pool) under two
bounds: the socket's own timeout and an ``asyncio.timeout`` around the thread, so a
Prometheus that accepts the connection and never answers is a :class:`PrometheusError`
after ``timeout`` seconds, never a hang. Every way a query can fail (refused,
unreachable, HTTP status, a body that is not Prometheus's JSON, ``status: error``)
is that one error with the reason in words; the analysis makes it "no data".
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
from dataclasses import dataclass
from typing import Any

MAX_BODY = 8 * 1024 * 1024  # a cohort's answer is a few series; more is a wrong query


class PrometheusError(Exception):
    """A query got no usable answer; ``str()`` says why, in words."""


@dataclass(frozen=True, slots=True)
class Series:
    """One element of an instant vector (or a scalar: no labels)."""

    labels: dict[str, str]
    value: float


def parse_response(body: bytes) -> list[Series]:
    """The series of an ``/api/v1/query`` answer; NaN and infinite values are dropped
    (``0/0`` of an idle cohort is no data, not a number to judge)."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PrometheusError(f"the answer is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise PrometheusError("the answer is not a Prometheus API object")
    if data.get("status") != "success":
        kind = data.get("errorType", "error")
        raise PrometheusError(f"Prometheus refused the query ({kind}): {data.get('error', '')}")
    result = data.get("data")
    if not isinstance(result, dict):
        raise PrometheusError("the answer has no data")
    rtype, items = result.get("resultType"), result.get("result")
    if rtype == "scalar" and isinstance(items, list):
        items = [{"metric": {}, "value": items}]
    elif rtype != "vector" or not isinstance(items, list):
        raise PrometheusError(f"expected an instant vector, got {rtype}")
    out: list[Series] = []
    for item in items:
        try:
            value = float(item["value"][1])
            labels = {str(k): str(v) for k, v in item.get("metric", {}).items()}
        except (KeyError, IndexError, TypeError, ValueError, AttributeError):
            raise PrometheusError("a series in the answer is malformed") from None
        if math.isfinite(value):
            out.append(Series(labels, value))
    return out


class PrometheusClient:
    """Instant queries against one server, with optional bearer or basic auth."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        bearer_token: str | None = None,
        basic_auth: tuple[str, str] | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._headers = {"Accept": "application/json", "User-Agent": "rolldeck"}
        if bearer_token:
            self._headers["Authorization"] = f"Bearer {bearer_token}"
        elif basic_auth is not None:
            raw = f"{basic_auth[0]}:{basic_auth[1]}".encode()
            self._headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()

    async def query(self, promql: str) -> list[Series]:
        """The instant vector of ``promql`` now; PrometheusError on any failure."""
        try:
            async with asyncio.timeout(self.timeout + 1.0):
                body = await asyncio.to_thread(self._fetch, promql)
        except TimeoutError:
            raise PrometheusError(f"no answer from {self.url} in {self.timeout:g}s") from None
        return parse_response(body)

    def _fetch(self, promql: str) -> bytes:
        # Imported here (in the worker thread): urllib.request brings http.client and
        # email, 10 ms of every start, needed by a rollout judged through Prometheus only.
        import urllib.error
        import urllib.parse
        import urllib.request

        data = urllib.parse.urlencode({"query": promql}).encode()
        request = urllib.request.Request(
            f"{self.url}/api/v1/query", data=data, headers=self._headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                return _read(answer)
        except urllib.error.HTTPError as exc:
            # Prometheus answers a bad query with 400 and its JSON error: say that.
            try:
                body = _read(exc)
                parse_response(body)
            except PrometheusError as inner:
                raise PrometheusError(f"HTTP {exc.code}: {inner}") from None
            except Exception:
                pass
            raise PrometheusError(f"HTTP {exc.code} {exc.reason} from {self.url}") from None
        except urllib.error.URLError as exc:
            raise PrometheusError(f"cannot reach {self.url}: {_reason(exc.reason)}") from None
        except TimeoutError:
            raise PrometheusError(f"no answer from {self.url} in {self.timeout:g}s") from None
        except OSError as exc:
            raise PrometheusError(f"talking to {self.url}: {_reason(exc)}") from None


def _read(answer: Any) -> bytes:
    body: bytes = answer.read(MAX_BODY + 1)
    if len(body) > MAX_BODY:
        raise PrometheusError(f"the answer is over {MAX_BODY // (1024 * 1024)} MiB")
    return body


def _reason(reason: object) -> str:
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason)
