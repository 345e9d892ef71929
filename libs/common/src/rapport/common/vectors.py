"""The encoder's sentence vector as it crosses a hop: recommend returns it, knowledge and
profile read it, and a ``chat_message`` event may carry it (so the message is encoded once).
"""

from __future__ import annotations

import base64
import sys
from array import array
from collections.abc import Sequence

from pydantic import BaseModel, Field


class MessageVector(BaseModel):
    """A sentence vector from the encoder, as little-endian float32 in base64 (2 kB for 384
    dimensions, against ~8 kB as JSON numbers)."""

    model: str = Field(description="The encoder and its version, e.g. `encoder:1`.")
    dimension: int = Field(ge=1, le=4096)
    data: str = Field(max_length=22_000, description="Base64 of `dimension` float32 (LE).")

    @classmethod
    def of(cls, values: Sequence[float], model: str) -> MessageVector:
        packed = array("f", values)
        if sys.byteorder == "big":
            packed.byteswap()
        return cls(model=model, dimension=len(packed), data=base64.b64encode(packed).decode())

    def values(self) -> list[float]:
        """The floats; ValueError when ``data`` does not hold ``dimension`` of them."""
        raw = base64.b64decode(self.data, validate=True)
        if len(raw) != 4 * self.dimension:
            raise ValueError(f"data holds {len(raw) // 4} floats, dimension says {self.dimension}")
        packed = array("f")
        packed.frombytes(raw)
        if sys.byteorder == "big":
            packed.byteswap()
        return packed.tolist()
