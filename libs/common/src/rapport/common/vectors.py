"""The encoder's sentence vector as it crosses a hop: recommend returns it, knowledge and
profile read it, and a ``chat_message`` event may carry it (so the message is encoded once).
"""

from __future__ import annotations

import base64
import sys
from array import array
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

if TYPE_CHECKING:  # numpy loads with the code that hands arrays over, not with every contract
    import numpy as np


class MessageVector(BaseModel):
    """A sentence vector from the encoder, as little-endian float32 in base64 (2 kB for 384
    dimensions, against ~8 kB as JSON numbers)."""

    model_config = ConfigDict(strict=True)  # a wire type: no coercion between JSON types

    model: str = Field(description="The encoder and its version, e.g. `encoder:1`.")
    dimension: int = Field(ge=1, le=4096)
    data: str = Field(max_length=22_000, description="Base64 of `dimension` float32 (LE).")

    @field_validator("dimension", mode="before")
    @classmethod
    def _whole(cls, value: object) -> object:
        """384.0 is the integer 384 in JSON (JSON Schema says so too), which a strict parse
        (ingest's) would refuse; 384.5 stays a float and is refused."""
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value

    @classmethod
    def of(cls, values: Sequence[float], model: str) -> MessageVector:
        packed = array("f", values)
        if sys.byteorder == "big":
            packed.byteswap()
        return cls(model=model, dimension=len(packed), data=base64.b64encode(packed).decode())

    @classmethod
    def of_array(cls, values: np.ndarray[Any, Any], model: str) -> MessageVector:
        """From the encoder's own array, without a list in between."""
        import numpy as np  # noqa: PLC0415 - see the import above

        packed = np.ascontiguousarray(values, dtype="<f4").reshape(-1)
        return cls(
            model=model, dimension=packed.size, data=base64.b64encode(packed.tobytes()).decode()
        )

    def _raw(self) -> bytes:
        """The little-endian float32 bytes; ValueError when there are not ``dimension``."""
        raw = base64.b64decode(self.data, validate=True)
        if len(raw) != 4 * self.dimension:
            raise ValueError(f"data holds {len(raw) // 4} floats, dimension says {self.dimension}")
        return raw

    def array(self) -> np.ndarray[Any, np.dtype[np.float32]]:
        """The floats as a native float32 array; ValueError as :meth:`values`."""
        import numpy as np  # noqa: PLC0415 - see the import above

        return np.frombuffer(self._raw(), dtype="<f4").astype(np.float32)

    def values(self) -> list[float]:
        """The floats; ValueError when ``data`` does not hold ``dimension`` of them."""
        raw = self._raw()
        packed = array("f")
        packed.frombytes(raw)
        if sys.byteorder == "big":
            packed.byteswap()
        return packed.tolist()
