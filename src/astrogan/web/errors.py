"""Every error the web app answers is JSON `{"error": reason}` with one line of reason."""

from __future__ import annotations

import math
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from astrogan.utils.errors import UserError
from astrogan.web.guard import Refused


def error_response(status: int, reason: str, *, headers: dict[str, str] | None = None) -> JSONResponse:
    """`{"error": reason}` with the reason's whitespace collapsed to single spaces."""
    return JSONResponse({"error": " ".join(str(reason).split())}, status_code=status, headers=headers)


def add_error_handlers(app: FastAPI) -> None:
    """Bad parameters and UserError -> 422, Refused -> 429/503 with Retry-After, HTTP errors keep their status,
    anything else -> 500 without detail."""

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        err = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "path", "header"))
        msg = str(err.get("msg", "invalid value"))
        given = err.get("input")
        if isinstance(given, str) and len(given) <= 40:
            # nan/inf pass float parsing and then fail a bound, which alone would read "should be <= 2"
            msg = "should be a finite number" if _non_finite(given) else msg
            msg += f", got {given!r}"
        return error_response(422, f"{loc}: {msg}" if loc else msg)

    @app.exception_handler(UserError)
    async def _user_error(_: Request, exc: UserError) -> JSONResponse:
        return error_response(422, str(exc))

    @app.exception_handler(Refused)
    async def _refused(_: Request, exc: Refused) -> JSONResponse:
        return error_response(exc.status, str(exc), headers={"Retry-After": str(exc.retry_after_s)})

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        # The exception's headers are part of the answer: a 405 must say what is allowed (RFC 9110 15.5.6).
        return error_response(exc.status_code, str(exc.detail), headers=_with_head(exc.headers))

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception) -> JSONResponse:
        return error_response(500, "internal error")


def _non_finite(text: str) -> bool:
    """Whether ``text`` parses as a float that is nan or infinite ("nan", "-inf", "1e999")."""
    try:
        return not math.isfinite(float(text))
    except ValueError:
        return False


def _with_head(headers: Mapping[str, str] | None) -> dict[str, str] | None:
    """`headers` with HEAD added to an `Allow` that has GET: HeadAsGet answers HEAD wherever GET is."""
    if not headers:
        return None
    out = dict(headers)
    allow = [m.strip() for m in out.get("Allow", "").split(",") if m.strip()]
    if "GET" in allow and "HEAD" not in allow:
        out["Allow"] = ", ".join([*allow, "HEAD"])
    return out
