"""``vaelab serve``: a registered vaelab model behind MLflow's own scoring app, with each
request bounded before MLflow reads it.

``mlflow models serve`` runs ``mlflow.pyfunc.scoring_server.init(model)`` (a FastAPI app)
under uvicorn. That app reads a whole request body and parses it (``json.loads``, a deep
copy, an array: about 0.4 MB of memory per 32×32 grey image) before any model code runs,
and neither it nor uvicorn has a body-size setting; it also drops params its signature does
not name before ``predict`` is called. ``vaelab serve`` builds the same app from the same
loaded pyfunc and wraps it in :class:`RequestGate`, an ASGI middleware that, on
``POST /invocations``:

- answers 413 to a body over :attr:`Limits.max_bytes` without reading it (by its
  ``Content-Length``, or by counting a chunked body's bytes and stopping at the limit);
- parses a JSON body that fits and answers 400 to ``params`` the model's signature does not
  name, and to more ``inputs`` (or ``instances``) than ``registry.max_images``, with the
  model's own message; such a request never reaches MLflow's parsing;
- hands everything else, body unchanged, to MLflow's app (which answers the other 400s).

Other paths (``/ping``, ``/health``, ``/version``) pass straight through.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vaelab.errors import UserError

if TYPE_CHECKING:
    from mlflow.pyfunc import PyFuncModel

    from vaelab.registry.pyfunc import VariantModel

log = logging.getLogger("vaelab.registry")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

INVOCATIONS = "/invocations"
# JSON bytes allowed per number of a request: a pixel is at most "255.0, " (7 bytes), a
# latent a float's repr with its separator ("-1.2345678901234567e-05, ", 25 bytes).
PIXEL_BYTES = 8
LATENT_BYTES = 32
# Room for the JSON around the numbers: brackets, keys, params.
ENVELOPE_BYTES = 64 * 1024
LIMIT_SETTING = "registry.max_images"
SERVE_MODEL_HELP = (
    "models:/NAME@ALIAS (e.g. models:/vaelab-vae@champion), models:/NAME/VERSION, "
    "runs:/RUN_ID/VARIANT (or VARIANT-decoder), or a saved MLflow model folder"
)
# Keys of MLflow's JSON request formats whose value is a list of images or latents.
BATCH_KEYS = ("inputs", "instances")


@dataclass(frozen=True)
class Limits:
    """What :class:`RequestGate` lets through to MLflow's app."""

    max_bytes: int
    max_items: int
    what: str  # "images" or "latents"
    item: str  # one item's shape, for messages: "16x16x1 image"
    params: tuple[str, ...]  # the params the model's signature names
    # Each param's JSON type, as its signature's ParamSpec names it ("string", "long", ...):
    # a value of another type is refused here, saying so (MLflow's own 400 quotes the inputs).
    param_types: tuple[tuple[str, str], ...] = ()


# Python types a JSON value of each MLflow param type arrives as.
JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "boolean": (bool,),
    "integer": (int,),
    "long": (int,),
    "float": (int, float),
    "double": (int, float),
}


def wrong_type(name: str, value: object, kind: str) -> str | None:
    """Why ``value`` is no valid ``kind`` for param ``name`` (its type, never the value), or
    None; a kind this table does not know is left to MLflow."""
    accepted = JSON_TYPES.get(kind)
    if accepted is None:
        return None
    is_bool = isinstance(value, bool)
    if isinstance(value, accepted) and (kind == "boolean" or not is_bool):
        return None
    return f"param {name} must be a {kind}; got a JSON {type(value).__name__}"


def limits_for(model: VariantModel, params: tuple[str, ...], max_images: int) -> Limits:
    """The limits of serving ``model`` (whose signature names ``params``) with
    ``registry.max_images`` = ``max_images``: ``max_images`` items of JSON at
    ``PIXEL_BYTES`` per pixel (``LATENT_BYTES`` per latent for a decoder), plus
    ``ENVELOPE_BYTES``."""
    from vaelab.registry.pyfunc import VaelabDecoder

    if isinstance(model, VaelabDecoder):
        dim = model._trained.latent_dim
        what, item, per_item = "latents", f"{dim}-number latent", dim * LATENT_BYTES
    else:
        height, width, channels = model.image_shape
        what, item = "images", f"{height}x{width}x{channels} image"
        per_item = height * width * channels * PIXEL_BYTES
    return Limits(
        max_bytes=max_images * per_item + ENVELOPE_BYTES,
        max_items=max_images,
        what=what,
        item=item,
        params=params,
    )


def _error(code: str, message: str) -> bytes:
    return json.dumps({"error_code": code, "message": message}).encode()


class RequestGate:
    """ASGI middleware in front of MLflow's scoring app: see the module's docstring.

    ``check_count(n)`` raises the model's own :class:`~vaelab.registry.pyfunc.RequestError`
    when ``n`` items are more than one call takes.
    """

    def __init__(self, app: ASGIApp, limits: Limits, check_count: Callable[[int], None]):
        self.app = app
        self.limits = limits
        self.check_count = check_count

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"].rstrip("/") == INVOCATIONS
        ):
            await self.app(scope, receive, send)
            return
        headers = {name.lower(): value for name, value in scope["headers"]}
        length = headers.get(b"content-length", b"").strip()
        if length.isdigit() and int(length) > self.limits.max_bytes:
            await self._too_large(send)
            return
        body, complete = await self._read(receive)
        if body is None:  # the client hung up: nobody to answer
            return
        if not complete:
            await self._too_large(send)
            return
        content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if content_type == b"application/json":
            refusal = await asyncio.to_thread(self.refusal, body)
            if refusal is not None:
                await _respond(send, 400, _error("INVALID_PARAMETER_VALUE", refusal))
                return
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, receive: Receive) -> tuple[bytes | None, bool]:
        """The body, whole (``complete``) or cut once it is over the limit; None if the
        client disconnected first."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None, False
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limits.max_bytes:
                return b"", False
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), True

    async def _too_large(self, send: Send) -> None:
        limits = self.limits
        message = (
            f"request body over {limits.max_bytes} bytes, the most this server reads: "
            f"{LIMIT_SETTING} ({limits.max_items}) {limits.what} of one {limits.item} as JSON; "
            f"send fewer {limits.what} per request, or raise {LIMIT_SETTING} in params.yaml"
        )
        await _respond(send, 413, _error("REQUEST_LIMIT_EXCEEDED", message))

    def refusal(self, body: bytes) -> str | None:
        """Why a JSON request that fits the byte limit is refused, or None to pass it on
        (malformed JSON too: MLflow's app answers it)."""
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):
            return None
        if not isinstance(payload, dict):
            return None
        params = payload.get("params")
        allowed = ", ".join(self.limits.params) or "none"
        if params is not None and not isinstance(params, dict):
            return f"params must be a JSON object; this model's params: {allowed}"
        unknown = sorted(set(params or {}) - set(self.limits.params))
        if unknown:
            return (
                f"unknown params {', '.join(unknown)}: this model's params are {allowed}"
                if self.limits.params
                else f"unknown params {', '.join(unknown)}: this model takes no params"
            )
        kinds = dict(self.limits.param_types)
        for name, value in (params or {}).items():
            if (reason := wrong_type(name, value, kinds.get(name, ""))) is not None:
                return reason
        from vaelab.registry.pyfunc import RequestError

        for key in BATCH_KEYS:
            items = payload.get(key)
            if isinstance(items, list):
                try:
                    self.check_count(len(items))
                except RequestError as err:
                    return err.reply
        return None


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives ``body`` once, then whatever the client sends next (its
    disconnect)."""
    given = False

    async def replayed() -> Message:
        nonlocal given
        if given:
            return await receive()
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed


async def _respond(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def gated_app(loaded: PyFuncModel, model: VariantModel, max_images: int) -> RequestGate:
    """MLflow's scoring app for ``loaded`` (as ``mlflow models serve`` builds it) behind a
    :class:`RequestGate` with ``model``'s limits."""
    from mlflow.pyfunc import scoring_server

    schema = loaded.metadata.get_params_schema()  # type: ignore[no-untyped-call]
    specs = list(schema.params) if schema is not None else []
    limits = replace(
        limits_for(model, tuple(spec.name for spec in specs), max_images),
        param_types=tuple((spec.name, spec.to_dict()["type"]) for spec in specs),
    )

    def check_count(count: int) -> None:
        model.check_count(count, limits.what)

    return RequestGate(scoring_server.init(loaded), limits, check_count)


def _listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port``, before the model loads; UserError if it cannot be."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise UserError(f"-h {host}: not an address to listen on ({err.strerror})") from err
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as err:
        sock.close()
        raise UserError(
            f"-h {host} -p {port}: cannot listen there ({err.strerror}); pick another port with -p"
        ) from err
    return sock


def serve(model_ref: str, host: str, port: int, params_file: Path) -> None:
    """Serve ``model_ref`` on ``host:port`` until interrupted, with ``registry.max_images``
    of ``params_file`` (its default where there is no such file) as the limit."""
    import uvicorn

    from vaelab.registry.generate import load_pyfunc, max_images, vaelab_model
    from vaelab.registry.pyfunc import MAX_IMAGES

    if ":/" not in model_ref and not (Path(model_ref) / "MLmodel").is_file():
        raise UserError(
            f"--model {model_ref}: not an MLflow model; serve a registered one "
            "(models:/vaelab-vae@champion, say) or a folder with an MLmodel file"
        )
    limit = max_images(params_file)
    sock = _listen(host, port)
    with sock:
        loaded = load_pyfunc(model_ref, model_config={MAX_IMAGES: limit})
        app = gated_app(loaded, vaelab_model(loaded, model_ref), limit)
        log.info(
            "serving %s on http://%s:%d: at most %d %s and %d bytes a request, params: %s",
            model_ref,
            host,
            port,
            limit,
            app.limits.what,
            app.limits.max_bytes,
            ", ".join(app.limits.params) or "none",
        )
        server = uvicorn.Server(uvicorn.Config(app, log_level="info"))
        server.run(sockets=[sock])


def _serve_command(args: Any) -> None:
    serve(args.model, args.host, args.port, Path(args.params))


def add_commands(subparsers: Any) -> None:
    """Register ``serve`` on the ``vaelab`` command."""
    srv = subparsers.add_parser(
        "serve",
        add_help=False,  # -h is the host, as for `mlflow models serve`
        help="serve a registered model over REST like `mlflow models serve`, with each request "
        "bounded (registry.max_images) and unknown params refused",
        description="Serve a vaelab model with MLflow's scoring app (POST /invocations, GET "
        "/ping, /health, /version) behind a gate: a body over the size registry.max_images "
        "allows is refused (413) before it is read, and params the model does not name (400).",
    )
    srv.add_argument("--help", action="help", help="show this help message and exit")
    srv.add_argument("-m", "--model", required=True, help=SERVE_MODEL_HELP)
    srv.add_argument(
        "-h", "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)"
    )
    srv.add_argument("-p", "--port", type=int, default=5000, help="port (default: 5000)")
    srv.set_defaults(func=_serve_command)
