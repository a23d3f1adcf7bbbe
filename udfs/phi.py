"""Identifiers left in a delivery declared de-identified (PHI_PRESENT).

De-identification replaces the patient's name and ID with a pseudonym
(`SUBJ-A-0001`, `C00002`) rather than deleting them, and may keep a replaced
accession number; so an identifier attribute holding a value says nothing by
itself. What does:

* a person's name in a name attribute: `MARTINEZ^JAMES` in PatientName, a
  technologist in OperatorsName, a physician in ReferringPhysicianName.
  A pseudonym is not a name: it has digits, or is a placeholder word
  (ANONYMOUS, SUBJECT, ...);
* any value in an attribute that de-identification removes and never
  replaces: a birth date, an address, a telephone number, a record locator;
* identifiers on an object that itself says PatientIdentityRemoved = NO.

Pure Python on a pydicom dataset; used by udfs/headers.py at ingest.
"""
from __future__ import annotations

import re

# Person-name attributes (VR PN) among the identifier keywords.
NAME_KEYWORDS = frozenset({
    "PatientName", "OtherPatientNames", "PatientBirthName", "PatientMotherBirthName",
    "ReferringPhysicianName", "PerformingPhysicianName", "NameOfPhysiciansReadingStudy",
    "PhysiciansOfRecord", "OperatorsName", "RequestingPhysician",
})
# Removed, never replaced, by de-identification (PS3.15 Basic Profile: action X or Z).
REMOVED_KEYWORDS = frozenset({
    "PatientBirthDate", "PatientBirthTime", "PatientAddress", "PatientTelephoneNumbers",
    "PatientTelecomInformation", "MedicalRecordLocator", "AdmissionID", "ReferringPhysicianAddress",
    "InstitutionAddress",
})
# The patient's own name attributes: their words are looked for in free text.
PATIENT_NAME_KEYWORDS = ("PatientName", "OtherPatientNames", "PatientBirthName")
NAME_PLACEHOLDER = "[name]"
# Words of pseudonyms and placeholders, never of a name.
PLACEHOLDERS = frozenset({
    "ANON", "ANONYMOUS", "ANONYMIZED", "ANONYMISED", "DEIDENTIFIED", "DE", "IDENTIFIED", "REMOVED",
    "UNKNOWN", "NONE", "NA", "PATIENT", "SUBJECT", "SUBJ", "CASE", "STUDY", "TRIAL", "TEST", "PHANTOM",
    "RESEARCH", "PSEUDONYM", "REDACTED", "DOCTOR", "DR", "PHYSICIAN", "OPERATOR", "TECH", "MD",
})
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)


def looks_like_a_name(value) -> bool:
    """Whether a PN value reads as a person's name: letters only (no digits),
    at least two words or a family^given pair, none of them a placeholder."""
    text = str(value) if value is not None else ""
    # family^given^middle^prefix^suffix: the prefix and suffix (DR., MED.) are no name
    text = " ".join(text.split("^")[:3])
    if not text.strip() or any(ch.isdigit() for ch in text):
        return False
    words = [w.upper() for w in _WORD.findall(text)]
    if not words or any(w in PLACEHOLDERS for w in words):
        return False
    return len(words) >= 2


def phi_evidence(values: dict[str, str], identity_removed: str | None,
                 person_names: frozenset[str] = frozenset()) -> list[str]:
    """Why the identifier values `values` (keyword -> non-empty text) are real
    identifiers, one line per attribute; empty when they read as pseudonyms.
    `person_names`: further keywords whose values are person names (VR PN)."""
    found = []
    for keyword in sorted(values):
        value = values[keyword]
        if keyword in REMOVED_KEYWORDS:
            found.append(f"{keyword} present")
        elif (keyword in NAME_KEYWORDS or keyword in person_names) and looks_like_a_name(value):
            found.append(f"{keyword} is a person's name")
    if values and (identity_removed or "").strip().upper() == "NO":
        found.append("PatientIdentityRemoved NO with " + ", ".join(sorted(values)))
    return found


def name_words(values) -> frozenset[str]:
    """The words of the patient's name values that would identify them in free
    text: letters only, three or more, not a placeholder; upper case."""
    words = set()
    for value in values:
        if value:
            words.update(w.upper() for w in _WORD.findall(" ".join(str(value).split("^")[:3])) if len(w) >= 3)
    return frozenset(words - PLACEHOLDERS)


def without_names(text, words: frozenset[str]):
    """`text` with each whole word of `words` (any case) replaced by [name];
    non-text values and text without those words come back unchanged."""
    if not words or not isinstance(text, str):
        return text
    return _WORD.sub(lambda m: NAME_PLACEHOLDER if m.group(0).upper() in words else m.group(0), text)
