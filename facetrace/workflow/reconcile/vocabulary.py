"""The fixed vocabularies of ante-mortem and post-mortem records, after the categories of INTERPOL's
Disaster Victim Identification forms: descriptors, distinguishing marks with a coded body location,
personal effects and primary identifier references.

Codes are stored; labels are shown. Every list is closed: a form offers them as choices and the API
refuses any other code with a 422 naming the field.
"""

from __future__ import annotations

# Kinds of case and identification levels are checked by the database too: defined there.
from facetrace.store.workflow_models import CASE_KINDS as CASE_KINDS
from facetrace.store.workflow_models import IDENTIFICATION_LEVELS as IDENTIFICATION_LEVELS

SEXES = ("female", "male")
BUILDS = ("slight", "medium", "heavy")
HAIR_COLOURS = ("black", "brown", "blond", "red", "grey", "white", "none")
HAIR_LENGTHS = ("bald", "short", "medium", "long")
EYE_COLOURS = ("brown", "hazel", "green", "blue", "grey", "other")
FACIAL_HAIR = ("none", "stubble", "moustache", "beard", "moustache_and_beard")

# Distinguishing marks and where they are. "dental" is a visible dental feature (gold crown, gap...).
MARK_TYPES = ("tattoo", "scar", "birthmark", "piercing", "amputation", "deformity", "dental")
BODY_REGIONS = (
    "scalp",
    "forehead",
    "eyebrow",
    "eye",
    "ear",
    "nose",
    "cheek",
    "lip",
    "mouth",
    "chin",
    "neck",
    "shoulder",
    "upper_arm",
    "elbow",
    "forearm",
    "wrist",
    "hand",
    "finger",
    "chest",
    "abdomen",
    "back",
    "hip",
    "buttock",
    "thigh",
    "knee",
    "lower_leg",
    "ankle",
    "foot",
    "toe",
)
SIDES = ("left", "right", "centre", "both")
ASPECTS = ("front", "back", "inner", "outer", "upper", "lower")

EFFECT_KINDS = ("clothing", "footwear", "jewellery", "watch", "glasses", "document", "phone", "other")

# Primary identifiers: references to where the data is held, never the data itself.
PRIMARY_KINDS = ("dna", "dental", "fingerprints")
REFERENCE_STATUSES = {
    "dna": ("requested", "collected", "profiled", "matched"),
    "dental": ("requested", "available", "compared", "matched"),
    "fingerprints": ("requested", "available", "compared", "matched"),
}

# Kinds of case, and the condition each implies (the condition decides the report's status on
# identification: identified deceased, or located alive).
CASE_KIND_CONDITION = {"deceased": "deceased", "living": "alive", "detained": "alive", "body_part": "deceased"}

CHOICES: dict[str, tuple[str, ...]] = {
    "sex": SEXES,
    "build": BUILDS,
    "hair_colour": HAIR_COLOURS,
    "hair_length": HAIR_LENGTHS,
    "eye_colour": EYE_COLOURS,
    "facial_hair": FACIAL_HAIR,
}


def label(code: str | None) -> str:
    """Return a code as words (``upper_arm`` -> ``upper arm``); '' for None."""
    return (code or "").replace("_", " ")
