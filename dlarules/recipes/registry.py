"""All recipes by name (the implementations behind the names in `catalog`)."""
from __future__ import annotations

from . import elementwise, heads, pooling, qdq, resize, structure
from .base import Recipe

REGISTRY: dict[str, Recipe] = {r.name: r for mod in (pooling, resize, elementwise, structure, heads, qdq) for r in mod.RECIPES}
