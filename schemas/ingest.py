"""Schemas of the ingest stage's tables: `instances` and `ingest_errors`.

`PROMOTED` lists the DICOM attributes that triage filters and groups on. Each
becomes a typed column named after its keyword in snake_case (DS/IS as
double/long, multi-valued as arrays, DA as date). Everything else stays in
`header_json` (DICOM JSON keyed by keyword, identifiers hashed, bulk data out).
"""
from __future__ import annotations

import re

from pyspark.sql.types import (ArrayType, BooleanType, DateType, DoubleType, LongType,
                               StringType, StructField, StructType, TimestampType)

SPARK_TYPES = {
    "str": StringType(),
    "long": LongType(),
    "double": DoubleType(),
    "date": DateType(),
    "str[]": ArrayType(StringType()),
    "long[]": ArrayType(LongType()),
    "double[]": ArrayType(DoubleType()),
}

# (keyword, kind). Order is the column order of `instances`.
PROMOTED: list[tuple[str, str]] = [
    ("SOPInstanceUID", "str"),
    ("SOPClassUID", "str"),
    ("StudyInstanceUID", "str"),
    ("SeriesInstanceUID", "str"),
    ("FrameOfReferenceUID", "str"),
    ("Modality", "str"),
    ("ImageType", "str[]"),
    ("SeriesNumber", "long"),
    ("InstanceNumber", "long"),
    ("AcquisitionNumber", "long"),
    ("Rows", "long"),
    ("Columns", "long"),
    ("NumberOfFrames", "long"),
    ("SamplesPerPixel", "long"),
    ("BitsAllocated", "long"),
    ("BitsStored", "long"),
    ("PixelRepresentation", "long"),
    ("PhotometricInterpretation", "str"),
    ("PixelSpacing", "double[]"),
    ("ImagerPixelSpacing", "double[]"),
    ("SliceThickness", "double"),
    ("SpacingBetweenSlices", "double"),
    ("SliceLocation", "double"),
    ("ImagePositionPatient", "double[]"),
    ("ImageOrientationPatient", "double[]"),
    ("PatientPosition", "str"),
    ("BodyPartExamined", "str"),
    ("Laterality", "str"),
    ("Manufacturer", "str"),
    ("ManufacturerModelName", "str"),
    ("StationName", "str"),
    ("InstitutionName", "str"),
    ("SoftwareVersions", "str[]"),
    ("ProtocolName", "str"),
    ("StudyDescription", "str"),
    ("SeriesDescription", "str"),
    ("KVP", "double"),
    ("XRayTubeCurrent", "double"),
    ("ExposureTime", "double"),
    ("ConvolutionKernel", "str[]"),
    ("MagneticFieldStrength", "double"),
    ("RepetitionTime", "double"),
    ("EchoTime", "double"),
    ("InversionTime", "double"),
    ("FlipAngle", "double"),
    ("ScanningSequence", "str[]"),
    ("SequenceName", "str"),
    ("MRAcquisitionType", "str"),
    ("RescaleSlope", "double"),
    ("RescaleIntercept", "double"),
    ("RescaleType", "str"),
    ("WindowCenter", "double[]"),
    ("WindowWidth", "double[]"),
    ("PixelPaddingValue", "long"),
    ("BurnedInAnnotation", "str"),
    ("LossyImageCompression", "str"),
    ("PatientIdentityRemoved", "str"),
    ("StudyDate", "date"),
    ("SeriesDate", "date"),
    ("AcquisitionDate", "date"),
    ("StudyTime", "str"),
    ("SeriesTime", "str"),
    ("PatientSex", "str"),
    ("PatientAge", "str"),
]

_SNAKE_EXCEPTIONS = {"KVP": "kvp"}


def snake_case(keyword: str) -> str:
    """`SliceThickness` → `slice_thickness`, `SOPInstanceUID` → `sop_instance_uid`."""
    if keyword in _SNAKE_EXCEPTIONS:
        return _SNAKE_EXCEPTIONS[keyword]
    text = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", keyword)
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", text)
    return text.lower()


PROMOTED_COLUMNS: dict[str, str] = {keyword: snake_case(keyword) for keyword, _ in PROMOTED}

# Columns every listed object carries, in `instances` and `ingest_errors` alike.
OBJECT_FIELDS = [
    StructField("path", StringType(), False),
    StructField("relative_path", StringType(), True),
    StructField("site", StringType(), True),
    StructField("size_bytes", LongType(), False),
    StructField("modified_at", TimestampType(), True),
    StructField("etag", StringType(), True),
]

RUN_FIELDS = [
    StructField("run_id", StringType(), False),
    StructField("ingested_at", TimestampType(), False),
]

INSTANCES = StructType(
    OBJECT_FIELDS
    + [StructField(PROMOTED_COLUMNS[kw], SPARK_TYPES[kind], True) for kw, kind in PROMOTED]
    + [
        StructField("transfer_syntax_uid", StringType(), True),
        StructField("sop_class_name", StringType(), True),
        StructField("has_preamble", BooleanType(), True),
        StructField("has_pixel_data", BooleanType(), True),
        StructField("pixel_data_offset", LongType(), True),
        # Keyed hashes of the identifiers that group a delivery (HMAC-SHA256, hex).
        StructField("patient_key", StringType(), True),
        StructField("accession_key", StringType(), True),
        # Identifier keywords that held a non-empty value (PHI_PRESENT evidence).
        StructField("identifiers_present", ArrayType(StringType()), True),
        # Why those values are real identifiers, not pseudonyms (udfs/phi.py): PHI_PRESENT.
        StructField("phi_evidence", ArrayType(StringType()), True),
        # What breaks DICOM PS3.10 / PS3.5 in an object read leniently (udfs/conformance.py): NON_CONFORMANT.
        StructField("conformance", ArrayType(StringType()), True),
        StructField("header_bytes_read", LongType(), True),
        StructField("header_json", StringType(), True),
    ]
    + RUN_FIELDS
)

INGEST_ERRORS = StructType(
    OBJECT_FIELDS
    + [
        StructField("error_code", StringType(), False),
        StructField("error_message", StringType(), True),
        StructField("bytes_read", LongType(), True),
    ]
    + RUN_FIELDS
)

# What one parse of one object produces: the union of both tables' columns,
# with `error_code` null for a readable object. Split into the two tables after.
PARSED = StructType(
    list(INSTANCES.fields)
    + [f for f in INGEST_ERRORS.fields if f.name not in INSTANCES.fieldNames()]
)
PARSED = StructType([
    StructField(f.name, f.dataType, True) if f.name == "error_code" else f for f in PARSED.fields
])
