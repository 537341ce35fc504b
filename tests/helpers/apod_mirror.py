"""A loopback HTTP server for the fetch tests and benchmark: an APOD mirror plus NASA and ESA API stubs.

The APOD mirror is built from the real archive metadata in ``../shared/data/apod-metadata``: day
pages in APOD's layout (``/apod/apYYMMDD.html``, the full-size image in the ``<a href>`` wrapping the
display ``<img src>``, video days as an ``<iframe>``, UTF-8 with ``<meta charset>``), tiny generated
pictures behind the image URLs, 404 for days the archive has no record of.

The API stubs follow the publishers' shapes, not the parsers': NASA's Collection+JSON search and
asset manifests (https://images.nasa.gov/docs/images.nasa.gov_api_docs.pdf; renditions
``~orig`` > ``~large`` > ... > ``~thumb``, the original a big picture, as it is there), and the
djangoplicity Data2Dome image feed of ESA/Hubble, ESA/Webb and ESO (``/images/d2d/``; shape read from
djangoplicity's ``media/d2d`` views and serializers and ``archives/utils.get_instance_resources``:
each item's resources nested in ``Assets[0].Resources``, ``Dimensions`` as floats, resource URLs
absolute under ``archives/images/<format>/<id>.<ext>``, ``Subject.Category`` holding AVM taxonomy
names), and a crawl of the same sites' HTML pages only (``/esa-crawl/<site>/``, `esa_crawl`). Pictures
answer ``Range`` requests (206), as the real CDNs do.

Faults are injected per path (``server.faults[path] = ["429", "500", ...]``, one consumed per request);
every request is logged with its User-Agent (``log``) and, in ``requests``, with its ``Range`` header,
the bytes of body sent, its arrival time (``t``, ``time.monotonic``) and the client's port (one per
connection); ``in_flight`` and ``max_in_flight`` count the requests received and not yet answered (the
concurrency a client reached). ``lockstep=N`` answers requests in rounds (``rounds``). ``latency_s`` is
slept before every response (the internet's round trip); the server sets TCP_NODELAY and listens with a
backlog of 128, as real servers do. Page faults: ``latin1`` (the page in ISO-8859-1, declared by
``<meta>`` only, like legacy APOD pages), ``latin1-mislabelled`` (the same bytes with a header claiming
UTF-8), ``videothumb`` (a video day that also shows a thumbnail picture), ``noimage``, ``offsite``. Body
faults: ``drop`` (cut mid-body, ``Content-Length`` says more), ``nolength`` (cut mid-body, no
``Content-Length``: the close looks like the end), ``junk`` (a picture's valid header followed by junk,
full length), ``bomb`` (a tiny PNG declaring 60000 x 60000 pixels), ``html``, ``huge``, ``badbytes``,
``octet`` (the picture whole, as ``application/octet-stream``), ``json:<text>`` (that text as the JSON
answer), ``trickle`` (the whole length declared, then the body a byte every ``trickle_s``: each read
is quick, the body never ends), ``slow``, status codes and redirects.
"""

from __future__ import annotations

import functools
import hashlib
import html
import io
import json
import re
import socket
import struct
import threading
import time
import zlib
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from PIL import Image

from tests.helpers import esa_crawl

APOD_PREFIX = "https://apod.nasa.gov/apod/"
_IMAGE_SUFFIX = re.compile(r"\.(jpe?g|png|gif)$", re.IGNORECASE)
_MONTHS = "January February March April May June July August September October November December".split()


def tiny_image(key: str, suffix: str, *, size: tuple[int, int] | None = None) -> tuple[bytes, str]:
    """A small deterministic picture for ``key`` (PNG, JPEG or GIF by suffix) and its media type."""
    h = hashlib.sha256(key.encode()).digest()
    w, hh = size or (8 + h[0] % 17, 8 + h[1] % 13)
    im = Image.new("RGB", (w, hh), (h[2], h[3], h[4]))
    im.putpixel((0, 0), (h[5], h[6], h[7]))
    buf = io.BytesIO()
    s = suffix.lower()
    if s in (".jpg", ".jpeg"):
        im.save(buf, "JPEG", quality=90)
        return buf.getvalue(), "image/jpeg"
    if s == ".gif":
        im.save(buf, "GIF")
        return buf.getvalue(), "image/gif"
    im.save(buf, "PNG")
    return buf.getvalue(), "image/png"


def junk_bytes(key: str, n: int) -> bytes:
    """``n`` deterministic pseudo-random bytes."""
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(f"{key}:{i}".encode()).digest()
        i += 1
    return bytes(out[:n])


def header_then_junk(body: bytes, key: str) -> bytes:
    """A picture's header kept whole (JPEG: through the start-of-scan segment; PNG: up to the first
    IDAT's data), the rest of its length junk: it opens, but its pixels do not decode."""
    if body.startswith(b"\xff\xd8"):
        sos = body.find(b"\xff\xda")
        cut = sos + 2 + int.from_bytes(body[sos + 2 : sos + 4], "big")
    elif body.startswith(b"\x89PNG"):
        cut = body.find(b"IDAT") + 4
    else:
        cut = len(body) // 3
    return body[:cut] + junk_bytes(key, max(len(body) - cut, 1024))


def bomb_png(width: int = 60000, height: int = 60000) -> bytes:
    """A decompression bomb: a PNG of a few dozen bytes whose header declares ``width`` x ``height``."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    idat = zlib.compress(b"\0" * 1024, 9)  # far too little data for those rows
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@functools.lru_cache(maxsize=16)
def noisy_jpeg(key: str, size: tuple[int, int]) -> bytes:
    """A JPEG of noise: big on the wire for its size (an "original" worth not downloading)."""
    import numpy as np

    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big"))
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=95)
    return buf.getvalue()


class ApodArchive:
    """The real APOD metadata, month files loaded on demand."""

    def __init__(self, metadata_dir: Path) -> None:
        self.dir = Path(metadata_dir)
        self._days: dict[str, dict] = {}
        self._loaded: set[str] = set()
        self._lock = threading.Lock()

    def entry(self, day: date) -> dict | None:
        """The metadata record of a day, or None."""
        name = "1995-06_16-30.json" if (day.year, day.month) == (1995, 6) else f"{day:%Y-%m}.json"
        with self._lock:
            if name not in self._loaded:
                path = self.dir / name
                if path.is_file():
                    for e in json.loads(path.read_text(encoding="utf-8")):
                        self._days[e["date"]] = e
                self._loaded.add(name)
        e = self._days.get(day.isoformat())
        return None if e is None or e.get("no_data") or not e.get("url") else e


def _local(url: str) -> str:
    return url[len(APOD_PREFIX) :] if url.startswith(APOD_PREFIX) else url


def is_picture_day(entry: dict) -> bool:
    """The README's rule: a ``url`` ending in an image suffix is a picture day."""
    return bool(_IMAGE_SUFFIX.search(urlsplit(entry["url"]).path))


def apod_page(
    entry: dict,
    *,
    no_image: bool = False,
    offsite: bool = False,
    video_thumbnail: bool = False,
    charset: str = "utf-8",
) -> str:
    """A day page in APOD's layout (see https://apod.nasa.gov/apod/ap150101.html).

    ``video_thumbnail``: a video day whose page also shows a linked thumbnail picture. ``charset``
    other than UTF-8: the legacy ``<meta http-equiv>`` declaration (encode the page with it).
    """
    d = date.fromisoformat(entry["date"])
    long_date = f"{d.year} {_MONTHS[d.month - 1]} {d.day}"
    title = html.escape(entry.get("title") or "")
    if no_image:
        media = "<p>This page has no picture today.</p>"
    elif video_thumbnail and not is_picture_day(entry):
        thumb = f"image/{d:%y%m}/video_thumb_{d:%y%m%d}.jpg"
        media = (
            f'<iframe width="960" height="540" src="{html.escape(entry["url"])}" '
            'frameborder="0" allowfullscreen></iframe>\n'
            f'<br><a href="{thumb}"><img src="{thumb}" alt="Video thumbnail"></a>'
        )
    elif is_picture_day(entry):
        full = html.escape(_local(entry.get("hdurl") or entry["url"]))
        if offsite:  # a link to a host outside the allowed set
            full = "http://offsite.invalid/apod/image/pic.jpg"
        disp = html.escape(_local(entry["url"]))
        media = (
            f'<a href="{full}">\n<IMG SRC="{disp}"\n'
            'alt="See Explanation.  Clicking on the picture will download\n'
            f'the highest resolution version available." style="max-width:100%"></a>'
        )
    else:
        media = (
            f'<iframe width="960" height="540" src="{html.escape(entry["url"])}" '
            'frameborder="0" allowfullscreen></iframe>'
        )
    if entry.get("copyright"):
        credit = (
            '<b> Image Credit &amp;\n<a href="lib/about_apod.html#srapply">Copyright</a>: </b>\n'
            f"{html.escape(entry['copyright'])}"
        )
    else:
        credit = "<b> Image Credit: </b> NASA"
    meta = (
        '<meta charset="utf-8">'
        if charset == "utf-8"
        else f'<meta http-equiv="Content-Type" content="text/html; charset={charset}">'
    )
    return f"""<!doctype html>
<html>
<head>
<title> APOD: {long_date} - {title}
</title>
{meta}
</head>
<body BGCOLOR="#F4F4FF" text="#000000" link="#0000FF" vlink="#7F0F9F" alink="#FF0000">
<center>
<h1> Astronomy Picture of the Day </h1>
<p>
<a href="archivepix.html">Discover the cosmos!</a>
Each day a different image or photograph of our fascinating universe is
featured, along with a brief explanation written by a professional astronomer.
<p>
{long_date}
<br>
{media}
</center>

<center>
<b> {title} </b> <br>
{credit}
</center> <p>

<b> Explanation: </b>
{html.escape(entry.get("explanation") or "")}
<p> <center>
<b> Tomorrow's picture: </b>open space
<br>
<hr>
<a href="archivepix.html">Archive</a> | <a href="lib/apsubject.html">Index</a>
</center>
</body>
</html>
"""


# ---- NASA Image and Video Library stub -------------------------------------------------------------

NASA_RENDITIONS = {
    "orig": (1600, 1200),  # noise: ~1.5 MB, the one never to download under a --max-side
    "large": (48, 36),
    "medium": (32, 24),
    "small": (16, 12),
    "thumb": (8, 6),
}


def nasa_items(num: int = 7) -> list[dict]:
    """Search hits of the stub: ``num`` images plus one video (which the fetcher must ignore)."""
    items = []
    for k in range(num):
        items.append(
            {
                "nasa_id": f"PIA{10000 + k}",
                "title": f"Nebula number {k}",
                "description": f"A glowing nebula, picture {k}.",
                "keywords": ["nebula", f"kw{k}"],
                "media_type": "image",
                "center": "JPL",
                "date_created": f"2010-01-{k + 1:02d}T00:00:00Z",
                "secondary_creator": "NASA/JPL-Caltech",
            }
        )
    items.insert(3, {"nasa_id": "VID001", "title": "A video", "media_type": "video", "center": "GSFC"})
    return items


# ---- ESA/Hubble, ESA/Webb, ESO djangoplicity stub --------------------------------------------------


ESA_FORMATS = {  # d2d ResourceType -> (djangoplicity format, file suffix, stub size)
    "Original": ("original", ".tif", (4000, 3000)),
    "Large": ("large", ".jpg", (40, 30)),
    "Medium": ("wallpaper5", ".jpg", (32, 24)),
    "Small": ("screen", ".jpg", (28, 21)),
    "Thumbnail": ("potwmedium", ".jpg", (20, 15)),
    "Icon": ("newsmini", ".jpg", (8, 6)),
}
_AVM_CATEGORIES = ["Milky Way : Nebula : Type : Star Formation", "Local Universe : Galaxy : Type : Spiral"]


def esa_items(site: str, num: int = 5) -> list[dict]:
    """Archive entries of the stub in the Data2Dome (``/images/d2d/``) item shape, resource URLs relative
    (the server makes them absolute, as djangoplicity's ``absolute_url`` is)."""
    prefix = {"hubble": "heic", "webb": "weic", "eso": "eso"}[site]
    out = []
    for k in range(num):
        ident = f"{prefix}{2000 + k}a"
        resources = [
            {
                "ResourceType": name,
                "MediaType": "Image",
                "URL": f"/archives/images/{fmt}/{ident}{suffix}",
                "FileSize": 36000000 if name == "Original" else 1000,
                "Dimensions": [float(size[0]), float(size[1])],
                "ProjectionType": "Tan",
            }
            for name, (fmt, suffix, size) in ESA_FORMATS.items()
        ]
        out.append(
            {
                "Creator": {"hubble": "ESA/Hubble", "webb": "ESA/Webb", "eso": "ESO"}[site],
                "URL": "/",
                "Contact": {"City": "Garching bei München", "Country": "Germany"},
                "ID": ident,
                "Title": f"{site} picture {k}",
                "Description": f"Description of {ident}.",
                "Credit": f"ESA/Hubble & NASA, author {k}",
                "PublicationDate": f"2020-02-{k + 1:02d}T12:00:00Z",
                "Subject": {"Category": [_AVM_CATEGORIES[k % 2]], "Name": [f"NGC {100 + k}"]},
                "ReferenceURL": f"/images/{ident}/",
                "Rights": "Creative Commons Attribution 4.0 International License",
                "Priority": 50 + k,
                "Assets": [
                    {
                        "MediaType": "Image",
                        "Resources": resources,
                        "ObservationData": {"Facility": ["Hubble Space Telescope"], "Instrument": ["WFC3"]},
                    }
                ],
            }
        )
    return out


class MirrorServer:
    """ThreadingHTTPServer on 127.0.0.1 serving ``/apod/``, ``/nasa/`` and ``/esa/<site>/``."""

    def __init__(
        self,
        metadata_dir: Path | None,
        *,
        latency_s: float = 0.0,
        slow_s: float = 2.0,
        lockstep: int | None = None,
        quiet_s: float = 0.5,
    ) -> None:
        self.archive = ApodArchive(metadata_dir) if metadata_dir else None
        self.latency_s, self.slow_s = latency_s, slow_s
        self.trickle_s = 0.05
        # Lockstep: requests are held and answered in rounds, a round as soon as `lockstep` requests wait
        # or none has come for `quiet_s`; `rounds` lists each round's size: the round trips a client
        # waited, counted without a clock.
        self.lockstep, self.quiet_s = lockstep, quiet_s
        self.rounds: list[int] = []
        self._waiting = 0
        self._round_done = threading.Condition()
        self.faults: dict[str, list[str]] = {}
        self.log: list[tuple[str, str]] = []
        self.mark = 0  # where the current test's part of `log` starts (see `since_mark`)
        self.requests: list[dict] = []  # per request: path, range, sent (body bytes), t, port (client's)
        self.nasa = nasa_items()
        self.nasa_page_size = 3
        # The documented ``/asset/NASA_ID`` endpoint; off: a mirror that serves only the search hits' own
        # ``href`` manifests (``.../collection.json``, a JSON array of the asset URLs).
        self.nasa_asset_endpoint = True
        self.esa = {s: esa_items(s) for s in ("hubble", "webb", "eso")}
        self.esa_page_size = 2
        self.in_flight = 0  # requests received and not yet answered (waiting out the latency)
        self.max_in_flight = 0  # the most at once since the last `reset_concurrency`
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # TCP_NODELAY, as real web servers set it: the headers and the body go out as two writes,
            # and with Nagle's algorithm on, the second waits for the client's delayed ACK (~40 ms
            # on Linux loopback) on every keep-alive response: an artefact of this stub, not latency.
            disable_nagle_algorithm = True

            def log_message(self, *args: object) -> None:  # quiet
                pass

            def do_GET(self) -> None:  # noqa: N802 (one handler serves a keep-alive connection's requests)
                with server._lock:
                    self.answered = False
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    server._handle(self)
                finally:
                    server._answering(self)  # (when no answer was sent)

        class Server(ThreadingHTTPServer):
            # socketserver's listen backlog of 5 drops the handshakes of a client that opens more
            # connections at once (the kernel then resends after a second); real servers listen
            # with hundreds (nginx: 511).
            request_queue_size = 128

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    # -- lifecycle
    @property
    def root(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def apod_url(self) -> str:
        """Base URL of the APOD mirror."""
        return f"{self.root}/apod/"

    def __enter__(self) -> MirrorServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def reset_concurrency(self) -> None:
        """Start counting ``max_in_flight`` (and lockstep ``rounds``) afresh."""
        with self._lock:
            self.max_in_flight = self.in_flight
        with self._round_done:
            self.rounds = []

    def _answering(self, h: BaseHTTPRequestHandler) -> None:
        """A request stops counting as in flight once its answer starts (before any byte leaves, so a
        client can never see it answered while it still counts: ``max_in_flight`` never exceeds the
        requests a client really had open at once)."""
        with self._lock:
            if not getattr(h, "answered", False):
                h.answered = True  # type: ignore[attr-defined]
                self.in_flight -= 1

    def _wait_for_round(self) -> None:
        """Lockstep: hold this request until its round is answered (full, or quiet for ``quiet_s``)."""
        with self._round_done:
            mine = len(self.rounds)
            self._waiting += 1
            self._round_done.notify_all()  # an arrival: the others' quiet time starts again
            while len(self.rounds) == mine:
                full = self._waiting >= (self.lockstep or 1)
                if full or (not self._round_done.wait(self.quiet_s) and len(self.rounds) == mine):
                    self.rounds.append(self._waiting)
                    self._waiting = 0
                    self._round_done.notify_all()

    def since_mark(self, prefix: str) -> list[str]:
        """Paths requested since ``mark`` that start with ``prefix``."""
        return [p for p, _ in self.log[self.mark :] if p.startswith(prefix)]

    def requests_for(self, prefix: str) -> list[str]:
        """Paths requested so far that start with ``prefix``."""
        with self._lock:
            return [p for p, _ in self.log if p.startswith(prefix)]

    def bytes_sent(self, path: str, since: int = 0) -> int:
        """Body bytes sent for ``path`` by requests number ``since`` on."""
        with self._lock:
            return sum(r["sent"] for r in self.requests[since:] if r["path"] == path)

    # -- dispatch
    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        path = parts.path
        record = {
            "path": h.path,
            "range": h.headers.get("Range"),
            "sent": 0,
            "t": time.monotonic(),
            "port": h.client_address[1],
        }
        with self._lock:
            self.log.append((h.path, h.headers.get("User-Agent", "")))
            self.requests.append(record)
            queue = self.faults.get(path)
            fault = queue.pop(0) if queue else None
        h.stub_record = record  # type: ignore[attr-defined]
        if self.latency_s:
            time.sleep(self.latency_s)
        if self.lockstep:
            self._wait_for_round()
        if fault == "slow":
            time.sleep(self.slow_s)
        elif fault and fault.startswith("429"):
            return self._send(
                h, 429, b"slow down", "text/plain", {"Retry-After": fault.partition(":")[2] or "1"}
            )
        elif fault and fault.startswith("redirect:"):
            return self._send(h, 302, b"", "text/plain", {"Location": fault.partition(":")[2]})
        elif fault and fault.isdigit():  # a bare status code: 500, 503, 403, 404 ...
            return self._send(h, int(fault), b"oops", "text/plain")
        elif fault == "html":
            return self._send(h, 200, b"<html><body>Not an image</body></html>", "text/html")
        elif fault == "huge":
            return self._send(h, 200, b"\xff\xd8\xff", "image/jpeg", declared_length=10**12)
        elif fault == "badbytes":
            return self._send(h, 200, b"this is not a jpeg at all", "image/jpeg")
        elif fault == "bomb":
            return self._send(h, 200, bomb_png(), "image/png")
        elif fault and fault.startswith("json:"):  # a JSON answer of another shape (an error, a proxy's [])
            return self._send(h, 200, fault.partition(":")[2].encode(), "application/json")
        body, ctype, code = self._route(path, parse_qs(parts.query), fault)
        if fault == "drop":
            return self._send(h, code, body[: len(body) // 2], ctype, declared_length=len(body))
        if fault == "nolength":
            return self._send(h, code, body[: len(body) // 2], ctype, declared_length=-1)
        if fault == "junk":
            return self._send(h, code, header_then_junk(body, path), ctype)
        if fault == "trickle":
            return self._trickle(h, code, body, ctype)
        if fault == "octet":  # a whole picture under the generic binary type (S3, plain file servers)
            return self._send(h, code, body, "application/octet-stream")
        if fault and fault.startswith("latin1"):
            # A legacy page: ISO-8859-1 bytes, declared by <meta> only (or under a header that lies).
            ctype = "text/html; charset=UTF-8" if fault == "latin1-mislabelled" else "text/html"
            return self._send(h, code, body, ctype)
        rng = re.fullmatch(r"bytes=(\d+)-(\d*)", h.headers.get("Range") or "")
        if rng and code == 200 and ctype.startswith("image/") and int(rng.group(1)) < len(body):
            first = int(rng.group(1))
            last = min(int(rng.group(2)) if rng.group(2) else len(body) - 1, len(body) - 1)
            crange = f"bytes {first}-{last}/{len(body)}"
            return self._send(h, 206, body[first : last + 1], ctype, {"Content-Range": crange})
        self._send(h, code, body, ctype)

    def _trickle(self, h: BaseHTTPRequestHandler, code: int, body: bytes, ctype: str) -> None:
        """Answer ``body`` a byte every ``trickle_s`` seconds, until it is sent or the client leaves."""
        self._answering(h)
        try:
            h.send_response(code)
            h.send_header("Content-Type", ctype)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            for i in range(len(body)):
                h.wfile.write(body[i : i + 1])
                h.wfile.flush()
                time.sleep(self.trickle_s)
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass
        h.close_connection = True

    def _send(
        self,
        h: BaseHTTPRequestHandler,
        code: int,
        body: bytes,
        ctype: str,
        headers: dict[str, str] | None = None,
        declared_length: int | None = None,
    ) -> None:
        """Send a response; ``declared_length`` (with a dropped connection after the body): the
        ``Content-Length`` to claim, or -1 for none at all (the close then looks like the body's end)."""
        self._answering(h)
        try:
            h.send_response(code)
            h.send_header("Content-Type", ctype)
            if declared_length != -1:
                h.send_header(
                    "Content-Length", str(declared_length if declared_length is not None else len(body))
                )
            for k, v in (headers or {}).items():
                h.send_header(k, v)
            if declared_length is not None:
                h.send_header("Connection", "close")
            h.end_headers()
            h.wfile.write(body)
            h.wfile.flush()
            record = getattr(h, "stub_record", None)
            if record is not None:
                record["sent"] += len(body)
            if declared_length is not None:  # drop the connection mid-body
                h.close_connection = True
                h.connection.shutdown(socket.SHUT_RDWR)
        except (BrokenPipeError, ConnectionResetError, OSError):
            h.close_connection = True

    def _route(self, path: str, query: dict, fault: str | None) -> tuple[bytes, str, int]:
        m = re.fullmatch(r"/apod/ap(\d\d)(\d\d)(\d\d)\.html", path)
        if m and self.archive is not None:
            yy, mm, dd = (int(g) for g in m.groups())
            try:
                day = date(1900 + yy if yy >= 95 else 2000 + yy, mm, dd)
            except ValueError:
                return b"no such day", "text/plain", 404
            entry = self.archive.entry(day)
            if entry is None:
                return b"<html>404 Not Found</html>", "text/html", 404
            latin1 = bool(fault and fault.startswith("latin1"))
            page = apod_page(
                entry,
                no_image=fault == "noimage",
                offsite=fault == "offsite",
                video_thumbnail=fault == "videothumb",
                charset="iso-8859-1" if latin1 else "utf-8",
            )
            if latin1:
                return page.encode("iso-8859-1", errors="xmlcharrefreplace"), "text/html", 200
            return page.encode("utf-8"), "text/html; charset=utf-8", 200
        if path.startswith("/apod/image/") and _IMAGE_SUFFIX.search(path):
            body, ctype = tiny_image(path, Path(path).suffix)
            return body, ctype, 200
        if path == "/nasa/search":
            return self._nasa_search(query)
        m = re.fullmatch(r"/nasa/asset/([A-Za-z0-9_.-]+)", path)
        if m and self.nasa_asset_endpoint:
            return self._nasa_asset(m.group(1))
        m = re.fullmatch(r"/nasa/media/([A-Za-z0-9_.-]+)/collection\.json", path)
        if m:
            return self._nasa_collection(m.group(1))
        m = re.fullmatch(r"/nasa/media/([A-Za-z0-9_.-]+)/[A-Za-z0-9_.-]+~(\w+)\.jpg", path)
        if m and m.group(2) == "orig":
            return noisy_jpeg(path, NASA_RENDITIONS["orig"]), "image/jpeg", 200
        if m and m.group(2) in NASA_RENDITIONS:
            body, ctype = tiny_image(path, ".jpg", size=NASA_RENDITIONS[m.group(2)])
            return body, ctype, 200
        m = re.fullmatch(r"/esa/(hubble|webb|eso)/images/d2d/", path)
        if m:
            return self._esa_listing(m.group(1), query)
        m = re.fullmatch(r"/esa/(hubble|webb|eso)/archives/images/(\w+)/(\w+)\.jpg", path)
        sizes = {fmt: size for fmt, suffix, size in ESA_FORMATS.values() if suffix == ".jpg"}
        if m and m.group(2) in sizes:
            body, ctype = tiny_image(path, ".jpg", size=sizes[m.group(2)])
            return body, ctype, 200
        if path.startswith(("/esa-crawl/", "/esa-cdn/")):  # a crawled mirror: HTML pages, no d2d feed
            return esa_crawl.route(self, path)
        return b"not found", "text/plain", 404

    def _nasa_search(self, query: dict) -> tuple[bytes, str, int]:
        if query.get("media_type", [""])[0] != "image" or not query.get("q"):
            return b'{"reason": "bad query"}', "application/json", 400
        page = int(query.get("page", ["1"])[0])
        n = self.nasa_page_size
        hits = self.nasa[(page - 1) * n : page * n]
        items = [
            {
                "href": f"{self.root}/nasa/media/{d['nasa_id']}/collection.json",
                "data": [d],
                "links": [{"href": self._nasa_urls(d["nasa_id"])[-2], "rel": "preview", "render": "image"}],
            }
            for d in hits
        ]
        links = []
        if page * n < len(self.nasa):
            q = query["q"][0]
            links.append(
                {
                    "rel": "next",
                    "prompt": "Next",
                    "href": f"{self.root}/nasa/search?q={q}&media_type=image&page={page + 1}",
                }
            )
        doc = {
            "collection": {
                "version": "1.0",
                "href": "",
                "items": items,
                "metadata": {"total_hits": len(self.nasa)},
                "links": links,
            }
        }
        return json.dumps(doc).encode(), "application/json", 200

    def _nasa_urls(self, nasa_id: str) -> list[str]:
        """An asset's files as the API lists them: the renditions, largest first, then metadata.json."""
        base = f"{self.root}/nasa/media/{nasa_id}/{nasa_id}"
        return [f"{base}~{r}.jpg" for r in NASA_RENDITIONS] + [
            f"{self.root}/nasa/media/{nasa_id}/metadata.json"
        ]

    def _nasa_asset(self, nasa_id: str) -> tuple[bytes, str, int]:
        if not any(d["nasa_id"] == nasa_id for d in self.nasa):
            return b'{"reason": "not found"}', "application/json", 404
        items = [{"href": u} for u in self._nasa_urls(nasa_id)]
        return (
            json.dumps({"collection": {"version": "1.0", "items": items}}).encode(),
            "application/json",
            200,
        )

    def _nasa_collection(self, nasa_id: str) -> tuple[bytes, str, int]:
        """A search hit's ``href`` (images-assets.nasa.gov's ``collection.json``): a bare JSON array of URLs."""
        if not any(d["nasa_id"] == nasa_id for d in self.nasa):
            return b"<Error><Code>NoSuchKey</Code></Error>", "application/xml", 404
        return json.dumps(self._nasa_urls(nasa_id)).encode(), "application/json", 200

    def _esa_listing(self, site: str, query: dict) -> tuple[bytes, str, int]:
        page = int(query.get("page", ["1"])[0])
        n = self.esa_page_size
        items = []
        site_url = f"{self.root}/esa/{site}"
        for it in self.esa[site][(page - 1) * n : page * n]:
            it = json.loads(json.dumps(it))
            for asset in it["Assets"]:
                for r in asset["Resources"]:
                    r["URL"] = f"{site_url}{r['URL']}"
            it["ReferenceURL"] = f"{site_url}{it['ReferenceURL']}"
            it["URL"] = f"{site_url}{it['URL']}"
            items.append(it)
        link = f"{site_url}/images/d2d/?page=%d"
        doc = {  # djangoplicity's D2dImageList page: exactly these four keys
            "Count": len(self.esa[site]),
            "Next": link % (page + 1) if page * n < len(self.esa[site]) else None,
            "Previous": (site_url + "/images/d2d/" if page == 2 else link % (page - 1)) if page > 1 else None,
            "Collections": items,
        }
        return json.dumps(doc).encode(), "application/json", 200
