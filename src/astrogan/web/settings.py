"""Server settings: one validated object, passed to every server process through an environment variable."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from astrogan.utils.errors import UserError

ENV_VAR = "ASTROGAN_SERVE_SETTINGS"


class ServeSettings(BaseModel):
    """Everything `astrogan serve` needs; frozen so that every process sees the same values."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model_path: Path
    pool_dir: Path | None = Field(None, description="pool folder (default: `pool/` beside the model)")
    pool_size: int = Field(500, ge=1, le=100_000, description="images the refill worker keeps on disk")
    low_water: int = Field(100, ge=0, description="refill starts when fewer unseen images remain")
    reservoir_size: int = Field(64, ge=1, le=10_000, description="recent images kept for `reuse`")
    when_empty: Literal["reuse", "generate"] = "reuse"
    refill_batch: int = Field(8, ge=1, le=256, description="images per refill generator call")
    trunc: float = Field(1.0, gt=0.0, le=2.0, description="truncation of the pool's pictures, in (0, 2]")
    num_threads: int = Field(0, ge=0, le=256, description="ONNX Runtime threads per process (0: default)")
    png_compress_level: int = Field(1, ge=0, le=9)
    image_cache_size: int = Field(256, ge=0, le=100_000, description="PNG responses kept in memory")
    max_steps: int = Field(64, ge=2, le=64)
    max_grid: int = Field(64, ge=1, le=64)
    max_request_pixels: int = Field(
        64 * 256 * 256, ge=1, le=1 << 28, description="pixels one grid or animation may draw (frames x H x W)"
    )
    image_cache_mb: float = Field(32.0, ge=0, le=65536, description="memory for cached image responses")
    heavy_workers: int = Field(
        1, ge=1, le=64, description="threads per process for /api/interpolate and grid"
    )
    heavy_queue: int = Field(
        4, ge=0, le=10_000, description="heavy requests waiting per process; more get 503"
    )
    image_workers: int = Field(2, ge=1, le=64, description="threads per process drawing /api/image.png")
    image_queue: int = Field(32, ge=0, le=10_000, description="/api/image.png draws waiting per process")
    heavy_rate_per_min: float = Field(
        30.0,
        gt=0,
        le=1e6,
        description="heavy requests a client may make per minute (per process); more get 429",
    )
    heavy_burst: int = Field(10, ge=1, le=100_000, description="heavy requests a client may make at once")
    header_timeout_s: float = Field(10.0, gt=0, le=600, description="time a client has to send its headers")
    refill_stale_s: float = Field(
        30.0, gt=0, le=86_400, description="an empty pool with no refill heartbeat this long is degraded"
    )
    subject: str | None = Field(
        None,
        min_length=1,
        max_length=40,
        pattern=r"^[A-Za-z][A-Za-z \-]*$",
        description='what the pictures show, for the title ("galaxy": "This galaxy does not exist")',
    )

    @model_validator(mode="after")
    def _check(self) -> ServeSettings:
        if self.low_water >= self.pool_size:
            raise ValueError(f"low_water ({self.low_water}) must be below pool_size ({self.pool_size})")
        return self

    @property
    def resolved_pool_dir(self) -> Path:
        """The pool folder, defaulting to `pool/` beside the model file."""
        return Path(self.pool_dir) if self.pool_dir else self.model_path.parent / "pool"

    def to_env(self) -> str:
        """JSON for the `ASTROGAN_SERVE_SETTINGS` environment variable."""
        return self.model_dump_json()

    @classmethod
    def from_env(cls) -> ServeSettings:
        """Read settings written by `astrogan serve` for its server processes."""
        raw = os.environ.get(ENV_VAR)
        if not raw:
            raise UserError(f"{ENV_VAR} is not set: start the server with `astrogan serve --model ...`")
        return cls.model_validate(json.loads(raw))
