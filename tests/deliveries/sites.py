"""Sending sites: scanner vendor, de-identification scheme, UID root, file naming.

Each site de-identified its export its own way (PS3.15 Basic Profile with
options), so pseudonym formats, retained attributes, date shifts and UID roots
differ between sites, as they do between hospitals of one delivery.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Site:
    key: str
    folder: str
    country: str
    manufacturer: str
    models: tuple[str, ...]
    station: str
    software: str
    uid_root: str
    implementation_uid: str
    implementation_name: str
    naming: str                 # horos | ge_media | uid_flat | accession | plain
    pseudonym: str              # format with {n}
    deid_method: str
    deid_codes: tuple[str, ...]  # CID 7050 codes
    keeps_characteristics: bool  # sex / age / weight retained
    date_shift_days: int
    study_descriptions: tuple[str, ...]
    params: dict = field(default_factory=dict)

    def pseudonym_for(self, n: int) -> str:
        return self.pseudonym.format(n=n)


DEID_CODE_MEANINGS = {
    "113100": "Basic Application Confidentiality Profile",
    "113101": "Clean Pixel Data Option",
    "113105": "Clean Descriptors Option",
    "113106": "Retain Longitudinal Temporal Information Full Dates Option",
    "113107": "Retain Longitudinal Temporal Information Modified Dates Option",
    "113108": "Retain Patient Characteristics Option",
    "113109": "Retain Device Identity Option",
    "113111": "Retain Safe Private Option",
}

MR_SITES = (
    Site("A", "SITE_A", "de", "SIEMENS", ("Prisma_fit", "Skyra"), "AWP66015",
         "syngo MR XA30", "2.25", "1.2.276.0.7230010.3.0.3.6.7", "OFFIS_DCMTK_367",
         "horos", "SUBJ-A-{n:04d}", "Basic Profile; Retain Device Identity; Modified Dates",
         ("113100", "113107", "113109"), False, -412,
         ("MRT Schaedel nativ", "MRT Kopf"),
         {"bits_stored": 12, "signed": False, "rescale": None, "gain": 900.0,
          "field_strength": 3.0, "coil": "Head_32", "thickness": 5.0, "gap": 0.5,
          "fov": 230.0, "country_lang": "de"}),
    Site("B", "SITE_B", "us", "GE MEDICAL SYSTEMS", ("DISCOVERY MR750w", "SIGNA Premier"),
         "GEMR750W1", "DV26.0_R03_1831.b", "1.3.6.1.4.1.14519.5.2.1", "1.2.840.113619.6.374",
         "MERGECOM3_450", "ge_media", "TRIAL042-B-{n:03d}",
         "CTP Default: based on DICOM PS3.15 AnnexE. Details in 0012,0064",
         ("113100", "113108", "113109", "113111"), True, 0,
         ("MRI BRAIN WO CONTRAST", "MR HEAD WO IV CONTRAST"),
         {"bits_stored": 16, "signed": True, "rescale": None, "gain": 2600.0,
          "field_strength": 3.0, "coil": "8HRBRAIN", "thickness": 5.0, "gap": 1.5,
          "fov": 240.0}),
    Site("C", "SITE_C", "nl", "Philips Medical Systems", ("Ingenia", "Achieva dStream"),
         "PHILIPS-7KQ2NU4", "5.6.1\\5.6.1.2", "1.2.826.0.1.3680043.10.543",
         "1.3.46.670589.50.1.8.0", "PMS-DICOM_5.6", "uid_flat", "C{n:05d}",
         "Basic Profile; Clean Descriptors; Retain Device Identity",
         ("113100", "113105", "113109"), True, -1096,
         ("MRI Hersenen", "MR HERSENEN ZONDER CONTRAST"),
         {"bits_stored": 12, "signed": False, "rescale": (0.0, 1.0), "gain": 1500.0,
          "field_strength": 1.5, "coil": "dS HeadNeck", "thickness": 4.0, "gap": 1.5,
          "fov": 230.0}),
)

CT_SITES = (
    Site("N", "SITE_N", "fr", "GE MEDICAL SYSTEMS", ("Revolution CT", "LightSpeed VCT"),
         "CT99REVO", "revo_ct_22.1.a", "1.2.826.0.1.3680043.10.1204",
         "1.2.840.113619.6.408", "GE_CT_EXPORT", "accession", "N{n:04d}-ANON",
         "Basic Profile; Retain Device Identity", ("113100", "113109"), True, -230,
         ("TDM CEREBRAL", "TDM THORAX", "TDM CRANE ET THORAX"),
         {"bits_stored": 16, "signed": True, "intercept": -1024.0, "padding": -2000,
          "serial": "CT-N-0417"}),
    Site("S", "SITE_S", "us", "SIEMENS", ("SOMATOM Force", "SOMATOM Definition AS+"),
         "CTAWP73419", "syngo CT VB20A", "2.25", "1.3.12.2.1107.5.1.4", "SIEMENS_CT_VB20A",
         "plain", "ANON{n:06d}", "Basic Profile; Modified Dates; Retain Device Identity",
         ("113100", "113107", "113109"), False, -731,
         ("CT HEAD WO CONTRAST", "CT CHEST WITH CONTRAST", "CT HEAD AND CHEST"),
         {"bits_stored": 12, "signed": False, "intercept": -1024.0, "padding": None,
          "serial": "73419"}),
    Site("E", "SITE_E", "de", "CANON_MEC", ("Aquilion ONE", "Aquilion Prime SP"),
         "CT-ONE-1", "V10.8SP0001", "1.2.826.0.1.3680043.10.877", "1.2.392.200036.9116.2.6",
         "TM_CT_V10", "uid_flat", "E-{n:05d}", "Basic Profile; Clean Descriptors",
         ("113100", "113105"), True, -58,
         ("CT Schaedel nativ", "CT Thorax mit KM", "CT Schaedel und Thorax"),
         {"bits_stored": 16, "signed": False, "intercept": -1024.0, "padding": None,
          "serial": "2CA1862071"}),
)

XR_SITES = (
    Site("R", "SITE_R", "us", "Carestream Health", ("DirectView CR 975", "DRX-Evolution"),
         "CR975-ED2", "5.7.412.7005", "1.2.826.0.1.3680043.10.3391", "1.2.840.113564.9.1",
         "CARESTREAM_54", "accession", "R{n:05d}", "CTP Default: based on DICOM PS3.15 AnnexE.",
         ("113100", "113108"), True, 0, ("XR CHEST PA AND LATERAL", "XR CHEST 2 VIEWS"),
         {"modality": "CR", "bits_stored": 12, "photometric": "MONOCHROME1", "spacing": 0.45,
          "detector": (955, 780), "ts": "rle", "series_per_view": True}),
    Site("T", "SITE_T", "nl", "Philips Medical Systems", ("DigitalDiagnost", "DigitalDiagnost C90"),
         "DD-LONG-02", "4.1.7", "1.2.826.0.1.3680043.10.3392", "1.3.46.670589.30.41.0",
         "PHILIPS_DD41", "horos", "T-{n:04d}", "Basic Profile; Clean Descriptors",
         ("113100", "113105"), True, -365, ("X-THORAX PA/LAT", "THORAX 2R"),
         {"modality": "DX", "bits_stored": 12, "photometric": "MONOCHROME2", "spacing": 0.5,
          "detector": (860, 860), "ts": "j2k", "series_per_view": False}),
    Site("U", "SITE_U", "de", "GE Healthcare", ("Optima XR220amx", "AMX Navigate"),
         "AMX-ITS-3", "ADS_28.7", "2.25", "1.2.840.113619.6.470", "GE_AMX_287",
         "plain", "PSEUDO-U-{n:04d}", "Basic Profile; Retain Device Identity",
         ("113100", "113109"), False, -88, ("Roentgen Thorax liegend", "Thorax a.p. Bett"),
         {"modality": "DX", "bits_stored": 14, "photometric": "MONOCHROME2", "spacing": 0.55,
          "detector": (782, 636), "ts": "explicit", "series_per_view": True}),
)
