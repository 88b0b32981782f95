"""dassl.modeling: Dassl's CNN backbones and heads are not part of promptlab's Dassl layer."""
from engine.errors import UsageError

raise UsageError(
    "dassl.modeling (Dassl's CNN backbones, heads and networks) is not part of promptlab's Dassl layer, "
    "which serves CLIP prompt learners; build models from clip.* and torch (docs/EXTENDING.md)"
)
