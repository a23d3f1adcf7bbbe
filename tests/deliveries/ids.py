"""Deterministic randomness, UIDs, pseudonyms and the identifiers planted as PHI.

Every random draw comes from `rng(seed, *keys)`: a generator seeded from the
delivery seed and a tuple of labels, so one object's content does not depend on
how many objects were made before it.
"""
from __future__ import annotations

import datetime as dt
import hashlib

import numpy as np


def _key_int(key) -> int:
    return int.from_bytes(hashlib.sha256(repr(key).encode()).digest()[:8], "big")


def rng(seed: int, *keys) -> np.random.Generator:
    return np.random.default_rng([int(seed)] + [_key_int(k) for k in keys])


def make_uid(root: str, seed: int, *keys) -> str:
    """A UID under `root` (no leading zeros, at most 64 characters)."""
    digits = str(_key_int((seed,) + keys) * 1000003 + _key_int(keys + (seed,)) % 1000003 + 1)
    uid = f"{root}.{digits}"
    return uid[:64].rstrip(".")


def shifted_date(base: dt.date, days: int) -> str:
    return (base + dt.timedelta(days=int(days))).strftime("%Y%m%d")


def time_of_day(r: np.random.Generator, start_hour: int = 7, end_hour: int = 19) -> float:
    """Seconds after midnight."""
    return float(r.integers(start_hour * 3600, end_hour * 3600))


def format_time(seconds: float, fraction: bool = False) -> str:
    seconds = seconds % 86400
    h, rem = divmod(int(seconds), 3600)
    m, s = divmod(rem, 60)
    text = f"{h:02d}{m:02d}{s:02d}"
    if fraction:
        text += f".{int(round((seconds % 1) * 1e6)) % 1000000:06d}"
    return text


# Identifiers planted as PHI: realistic names per country, MRN formats per site.
PERSON_NAMES = {
    "de": [("MUELLER", "KATHARINA"), ("SCHNEIDER", "JUERGEN"), ("BECKER", "MONIKA"),
           ("HOFFMANN", "STEFAN"), ("WAGNER", "ELISABETH"), ("KRAUSE", "DIETER"),
           ("SCHULZ", "SABINE"), ("KOCH", "WOLFGANG")],
    "us": [("JOHNSON", "MARY"), ("WILLIAMS", "ROBERT"), ("GARCIA", "PATRICIA"),
           ("MARTINEZ", "JAMES"), ("ROBINSON", "LINDA"), ("THOMPSON", "MICHAEL"),
           ("WHITE", "BARBARA"), ("HARRIS", "DAVID")],
    "nl": [("DE JONG", "ANNEKE"), ("VAN DIJK", "PIETER"), ("BAKKER", "JOHANNA"),
           ("JANSEN", "WILLEM"), ("VISSER", "MARIEKE"), ("SMIT", "HENDRIK"),
           ("MEIJER", "INGRID"), ("DE BOER", "GERRIT")],
    "fr": [("MARTIN", "SYLVIE"), ("BERNARD", "PHILIPPE"), ("DUBOIS", "NATHALIE"),
           ("LEFEBVRE", "ALAIN"), ("MOREAU", "CATHERINE"), ("LAURENT", "FRANCOIS")],
}
PHYSICIANS = {
    "de": ["HARTMANN^PETER^^DR. MED.", "WEBER^CLAUDIA^^DR.", "FISCHER^THOMAS^^PROF. DR."],
    "us": ["ANDERSON^KEVIN^L^^MD", "TAYLOR^SUSAN^M^^MD", "MOORE^RICHARD^^^DO"],
    "nl": ["VAN DEN BERG^ERIK^^DR.", "MULDER^SASKIA^^DR.", "DEKKER^JAN^^DRS."],
    "fr": ["GIRARD^NICOLAS^^DR", "ROUX^ISABELLE^^DR", "FONTAINE^MARC^^PR"],
}
ADDRESSES = {
    "de": ["Lindenstrasse 14, 50667 Koeln", "Am Bergweg 3, 69120 Heidelberg"],
    "us": ["1187 Maple Avenue, Springfield, IL 62704", "42 Harbor Drive, Portland, ME 04101"],
    "nl": ["Kerkstraat 27, 3511 LX Utrecht", "Dorpsweg 8, 9731 AB Groningen"],
    "fr": ["12 rue des Lilas, 69003 Lyon", "5 avenue Jean Jaures, 31000 Toulouse"],
}
INSTITUTIONS = {
    "de": ("Universitaetsklinikum Rheinland, Radiologie", "Kerpener Strasse 62, 50937 Koeln"),
    "us": ("Lakeside Memorial Hospital", "2300 Lakeshore Blvd, Chicago, IL 60614"),
    "nl": ("Ziekenhuis Oost-Nederland", "Geert Grooteplein 10, 6525 GA Nijmegen"),
    "fr": ("Centre Hospitalier Saint-Roch", "17 boulevard Pasteur, 06000 Nice"),
}


def mrn(country: str, r: np.random.Generator) -> str:
    """A medical record number in a site's usual format."""
    n = int(r.integers(10**6, 10**7))
    return {"de": f"{n:08d}", "us": f"MRN{n}", "nl": f"{n % 10**7:07d}{r.integers(0, 10)}",
            "fr": f"IPP{n}"}[country]


def person(country: str, r: np.random.Generator) -> tuple[str, str]:
    last, first = PERSON_NAMES[country][int(r.integers(len(PERSON_NAMES[country])))]
    return last, first


def birth_date(r: np.random.Generator) -> str:
    year = int(r.integers(1938, 2001))
    day = dt.date(year, 1, 1) + dt.timedelta(days=int(r.integers(0, 365)))
    return day.strftime("%Y%m%d")
