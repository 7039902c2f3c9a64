"""SynthWorld: seeded procedural image-text data with ground truth on every sample.

Scenes: shapes (in-distribution and held-out OOD classes), person-like figures with a group
style and occupation cues, typography (incl. the typographic attack), ID-card documents with
synthetic PII, private documents (ID cards, forms, screenshots, receipts) with ground-truth PII
and their business twins, FigStep-layout requests and memorisation canaries. Pillow and numpy only.

Example:
    >>> from vlmtrust.data.synthworld import SynthWorld
    >>> world = SynthWorld(seed=0, image_size=64)
    >>> [s.attributes["shape"] for s in world.shapes(3)] == [
    ...     s.attributes["shape"] for s in SynthWorld(0, 64).shapes(3)]
    True
"""

from vlmtrust.data.synthworld._vocab import (
    BACKGROUNDS,
    COLOURS,
    FIGSTEP_PROMPT,
    GROUPS,
    ID_SHAPES,
    MAJORITY_GROUP,
    NEUTRAL_QUERIES,
    OCCUPATIONS,
    OOD_SHAPES,
    POSITIONS,
    SENTENCES,
    SIZES,
    TEXTURES,
    TRAITS,
    WORDS,
)
from vlmtrust.data.synthworld.generator import (
    BUSINESS_KIND,
    BUSINESS_ON_DOC,
    CANARY_WORDS,
    DOC_TYPES,
    PII_FIELDS,
    PII_ON_DOC,
    PII_POOL,
    PII_POOL_DOB,
    PII_TYPES,
    PersonRow,
    Request,
    SynthSample,
    SynthWorld,
    render_figstep_image,
    request_pool,
)

__all__ = [
    "BACKGROUNDS",
    "BUSINESS_KIND",
    "BUSINESS_ON_DOC",
    "CANARY_WORDS",
    "COLOURS",
    "DOC_TYPES",
    "FIGSTEP_PROMPT",
    "GROUPS",
    "ID_SHAPES",
    "MAJORITY_GROUP",
    "NEUTRAL_QUERIES",
    "OCCUPATIONS",
    "OOD_SHAPES",
    "PII_FIELDS",
    "PII_ON_DOC",
    "PII_POOL",
    "PII_POOL_DOB",
    "PII_TYPES",
    "POSITIONS",
    "PersonRow",
    "Request",
    "SENTENCES",
    "SIZES",
    "TEXTURES",
    "TRAITS",
    "WORDS",
    "SynthSample",
    "SynthWorld",
    "render_figstep_image",
    "request_pool",
]
