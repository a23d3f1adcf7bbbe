"""Who is in the demo delivery: hospitals (sites), their scanners and protocols,
and patients with fake identifiers.

Identifiers are invented and distinctive (e.g. ``QUILBRACK^ELMIRA^Q7X``,
``SAH-Q7X48213``) so that a later check can search every output for them and
never meet them by chance in the source files or in generated UIDs. Every
string planted in a header is collected in `Identifiers`.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Scanner:
    modality: str
    manufacturer: str
    model: str
    station: str
    software: str
    serial: str
    field_strength: float | None = None   # MR, tesla


@dataclass(frozen=True)
class Protocol:
    """An MR or CT acquisition as the site names and plans it."""

    name: str                      # ProtocolName and SeriesDescription
    plane: str                     # AX / SAG / COR (imaging.PLANES)
    contrast: str                  # MR: T1 / T2 / FLAIR; CT: CT
    slices: int
    spacing: float                 # mm between slice centres (SpacingBetweenSlices)
    thickness: float               # mm (SliceThickness)
    matrix: int                    # rows = columns
    pixel_spacing: float           # mm
    tilt: float = 0.0              # degrees about left-right
    mr: dict = field(default_factory=dict)   # MR sequence attributes by keyword


@dataclass(frozen=True)
class Site:
    code: str                      # A, B, C, D
    folder: str                    # top folder of the delivery
    institution: str
    address: str                   # InstitutionAddress (planted identifier)
    department: str
    charset: str                   # SpecificCharacterSet
    scanners: dict                 # modality -> Scanner
    protocols: dict                # key -> Protocol
    mr_body_part: str              # what this site writes in BodyPartExamined for brain MR
    localizer: str                 # vendor name of the 3-plane scout series
    referring: tuple[str, ...]     # ReferringPhysicianName values (planted)
    operators: tuple[str, ...]     # OperatorsName values (planted)
    private_creator: str           # a private block carrying the patient ID
    id_prefix: str


def _mr(**kw) -> dict:
    return kw


SITES: tuple[Site, ...] = (
    Site(
        code="A", folder="site_a", institution="Saint Aldhelm University Hospital",
        address="14 Wrenfield Lane, Marrowby MB7 2QX", department="Neuroradiology",
        charset="ISO_IR 100",
        scanners={
            "MR": Scanner("MR", "SIEMENS", "Skyra", "SAHMR01", "syngo MR E11", "45012", 3.0),
            "CT": Scanner("CT", "SIEMENS", "SOMATOM Definition AS", "SAHCT02", "syngo CT VA48A", "61877"),
            "OT": Scanner("OT", "SIEMENS", "syngo.via", "SAHWS07", "VB60", "W0417"),
        },
        protocols={
            "t1": Protocol("t1_mprage_sag", "SAG", "T1", 14, 9.0, 6.0, 176, 1.363636, 0.0,
                           _mr(ScanningSequence=["GR", "IR"], SequenceVariant=["SK", "SP", "MP"],
                               MRAcquisitionType="3D", RepetitionTime=2300.0, EchoTime=2.98,
                               InversionTime=900.0, FlipAngle=9.0)),
            "t2": Protocol("t2_tse_tra", "AX", "T2", 16, 7.5, 5.0, 160, 1.4375, 6.0,
                           _mr(ScanningSequence=["SE"], SequenceVariant=["SK", "SP", "OSP"],
                               MRAcquisitionType="2D", RepetitionTime=6000.0, EchoTime=95.0,
                               FlipAngle=150.0, EchoTrainLength=16)),
            "flair": Protocol("t2_tirm_cor_dark-fluid", "COR", "FLAIR", 14, 11.0, 5.0, 144, 1.666667, 0.0,
                              _mr(ScanningSequence=["SE", "IR"], SequenceVariant=["SK", "SP", "MP"],
                                  MRAcquisitionType="2D", RepetitionTime=9000.0, EchoTime=81.0,
                                  InversionTime=2500.0, FlipAngle=150.0)),
            "ct": Protocol("HeadRoutine 5.0 H31s", "AX", "CT", 11, 5.0, 5.0, 256, 0.957031),
        },
        mr_body_part="HEAD", localizer="AAHScout",
        referring=("DRUMVANE^ODETTE^^DR", "HALVSTOCK^MAGNUS^P^DR"),
        operators=("PELLSTOCK^IVO", "KESTWICK^MAREN"),
        private_creator="ALDHELM PACS 1.0", id_prefix="SAH",
    ),
    Site(
        code="B", folder="site_b", institution="Groves Memorial Hospital",
        address="220 Tannery Road, Holloway Cross HX4 9ZL", department="Radiology",
        charset="ISO_IR 100",
        scanners={
            "MR": Scanner("MR", "GE MEDICAL SYSTEMS", "DISCOVERY MR750", "GMHMR750",
                          "DV26.0_R03", "MR750X12", 3.0),
            "CT": Scanner("CT", "GE MEDICAL SYSTEMS", "Revolution CT", "GMHCT1", "rev_ct_2.1", "RCT5521"),
        },
        protocols={
            "t1": Protocol("Sag T1 FLAIR", "SAG", "T1", 14, 9.0, 5.0, 160, 1.5, 0.0,
                           _mr(ScanningSequence=["SE", "IR"], SequenceVariant=["SK", "OSP"],
                               MRAcquisitionType="2D", RepetitionTime=2200.0, EchoTime=11.0,
                               InversionTime=860.0, FlipAngle=111.0)),
            "t2": Protocol("Ax T2 FRFSE", "AX", "T2", 16, 7.5, 5.0, 192, 1.197917, 4.0,
                           _mr(ScanningSequence=["SE"], SequenceVariant=["SK", "OSP"],
                               MRAcquisitionType="2D", RepetitionTime=5500.0, EchoTime=102.0,
                               FlipAngle=125.0, EchoTrainLength=24)),
            "t1ax": Protocol("Ax T1 FSPGR", "AX", "T1", 16, 7.0, 6.0, 160, 1.4375, 5.0,
                             _mr(ScanningSequence=["GR"], SequenceVariant=["SS", "SP"],
                                 MRAcquisitionType="3D", RepetitionTime=8.2, EchoTime=3.2,
                                 InversionTime=450.0, FlipAngle=12.0)),
            "ct": Protocol("Routine Head", "AX", "CT", 11, 5.0, 5.0, 256, 0.957031),
        },
        mr_body_part="", localizer="3-Plane Loc",
        referring=("OSKLOWE^BEATRIX^^DR", "FENWROYCE^CASIMIR^^DR"),
        operators=("THAXMERE^NELL", "BRAMDANE^TOBIAS"),
        private_creator="GROVES RIS 2", id_prefix="GMH",
    ),
    Site(
        code="C", folder="site_c", institution="H\u00f4pital Sainte-Ombeline",
        address="3 Rue des Quenouilles, 51990 Vauclairmont", department="Imagerie",
        charset="ISO_IR 100",
        scanners={
            "MR": Scanner("MR", "Philips Medical Systems", "Ingenia", "HSOMR1", "5.7.1", "42877", 1.5),
            "CT": Scanner("CT", "Philips", "Brilliance 64", "HSOCT64", "4.1.6", "C7720"),
        },
        protocols={
            "t1": Protocol("T1W_3D_TFE", "SAG", "T1", 14, 9.0, 6.0, 160, 1.5, 0.0,
                           _mr(ScanningSequence=["GR"], SequenceVariant=["SP", "MP"],
                               MRAcquisitionType="3D", RepetitionTime=8.1, EchoTime=3.7,
                               FlipAngle=8.0)),
            "t2": Protocol("T2W_TSE", "AX", "T2", 16, 7.5, 5.0, 176, 1.306818, 7.0,
                           _mr(ScanningSequence=["SE"], SequenceVariant=["SK"],
                               MRAcquisitionType="2D", RepetitionTime=4000.0, EchoTime=100.0,
                               FlipAngle=90.0, EchoTrainLength=15)),
            "flair": Protocol("FLAIR_longTR COR", "COR", "FLAIR", 14, 11.0, 5.0, 144, 1.666667, 0.0,
                              _mr(ScanningSequence=["SE", "IR"], SequenceVariant=["SK", "MP"],
                                  MRAcquisitionType="2D", RepetitionTime=11000.0, EchoTime=125.0,
                                  InversionTime=2800.0, FlipAngle=90.0)),
            "ctchest": Protocol("Thorax 5.0 B", "AX", "CT", 12, 5.0, 5.0, 128, 0.661468),
        },
        mr_body_part="BRAIN", localizer="Survey",
        referring=("VARGASSO^ELOISE^^DR", "QUILBRACK^ANSELM^^DR"),
        operators=("ZELHOLM^FELIX", "MORVANE^ODILE"),
        private_creator="OMBELINE SIH", id_prefix="HSO",
    ),
    Site(
        code="D", folder="site_d", institution="Kestrel Valley Community Hospital",
        address="9 Orchard Spur, Kestrel Valley KV2 8WD", department="Imaging",
        charset="",
        scanners={
            "CR": Scanner("CR", "FUJIFILM Corporation", "FCR CAPSULA XLII", "KVHCR1", "A08", "28811"),
            "DX": Scanner("DX", "Carestream Health", "DRX-Evolution", "KVHDR2", "5.7.412", "DRX0934"),
            "US": Scanner("US", "GE Healthcare", "LOGIQ E9", "KVHUS1", "R6.1.3", "LQ99420"),
            "OT": Scanner("OT", "Kestrel PACS", "Image Import", "KVHIMP", "2.4", "IMP1"),
        },
        protocols={},
        mr_body_part="", localizer="",
        referring=("WICKSTOCK^ROSALIND^^DR", "DANEMERE^OTTO^^DR"),
        operators=("LOWEBRACK^IDA", "VANTHAX^PIET"),
        private_creator="KESTREL PACS", id_prefix="KVH",
    ),
)

SITE = {site.code: site for site in SITES}

FAMILY_A = ("QUIL", "VAR", "THAX", "BRAM", "ZEL", "MOR", "KEST", "PELL", "DRUM", "FENW",
            "OSK", "HALV", "TROV", "GRISK", "WEND", "LOCH")
FAMILY_B = ("BRACK", "GASSO", "TERHOLM", "WICKE", "DANEY", "ROYCE", "MERELL", "STOCKARD",
            "LOWERY", "VANEK", "SPURLING", "HOLT")
GIVEN_F = ("JANE", "ELMIRA", "BEATRIX", "NELL", "ROSALIND", "MAREN", "ODETTE", "AGATHE", "LIV")
GIVEN_M = ("OTTO", "CASIMIR", "IVO", "TOBIAS", "FELIX", "ANSELM", "PIET", "BRUNO", "EMIL")
LETTERS = "QXZJKVW"


@dataclass(frozen=True)
class Patient:
    site: Site
    folder: str              # pat_0001 (not an identifier)
    patient_id: str
    name: str
    birth_date: str          # YYYYMMDD
    sex: str
    other_id: str
    address: str


def make_patient(site: Site, number: int, rng: np.random.Generator) -> Patient:
    """A fake patient with distinctive identifiers; `number` is unique in the delivery."""
    code = f"{rng.choice(list(LETTERS))}{rng.integers(2, 10)}{rng.choice(list(LETTERS))}"
    sex = "F" if rng.random() < 0.5 else "M"
    given = rng.choice(GIVEN_F if sex == "F" else GIVEN_M)
    family = rng.choice(FAMILY_A) + rng.choice(FAMILY_B)
    birth = dt.date(1936, 1, 1) + dt.timedelta(days=int(rng.integers(0, 365 * 67)))
    digits = int(rng.integers(10000, 99999))
    return Patient(
        site=site,
        folder=f"pat_{number:04d}",
        patient_id=f"{site.id_prefix}-{code}{digits}",
        name=f"{family}^{given}^{code}",
        birth_date=birth.strftime("%Y%m%d"),
        sex=sex,
        other_id=f"MRN{code}{digits + 7}",
        address=f"{int(rng.integers(2, 90))} {rng.choice(FAMILY_A).title()}wick Row, Marrowby {code}",
    )


def study_date(rng: np.random.Generator) -> dt.datetime:
    day = dt.date(2023, 1, 2) + dt.timedelta(days=int(rng.integers(0, 700)))
    return dt.datetime.combine(day, dt.time(int(rng.integers(7, 19)), int(rng.integers(0, 60)),
                                            int(rng.integers(0, 60))))


def patient_age(birth_date: str, on: dt.date) -> str:
    born = dt.datetime.strptime(birth_date, "%Y%m%d").date()
    years = on.year - born.year - ((on.month, on.day) < (born.month, born.day))
    return f"{years:03d}Y"
