"""One package per wire format, over the small interface of :mod:`.base`."""

from __future__ import annotations

from .base import Parsed, Protocol
from .hrana import Hrana
from .neon import Neon
from .planetscale import PlanetScale as PlanetScaleHTTP
from .polyscale import PolyScale

__all__ = ["Hrana", "Neon", "Parsed", "PlanetScaleHTTP", "PolyScale", "Protocol"]
