"""The Arrow schemas the jobs hand to Spark, built without PySpark's internal converter."""
import pyarrow as pa
import pytest
from pyspark.sql.types import (ArrayType, DecimalType, DoubleType, MapType, StringType, StructField,
                               StructType, TimestampType)

from dicom_triage.jobs.arrow_schema import arrow_type, to_arrow_schema
from dicom_triage.jobs.inventory import INVENTORY_SPARK_SCHEMA
from dicom_triage.schemas.ingest import PARSED
from dicom_triage.schemas.pixels import PIXEL_STATS
from dicom_triage.udfs.inventory import INVENTORY_SCHEMA


def test_timestamps_are_utc_microseconds_and_nullability_is_kept():
    schema = StructType([StructField("at", TimestampType(), False), StructField("name", StringType())])
    assert to_arrow_schema(schema) == pa.schema([pa.field("at", pa.timestamp("us", tz="UTC"), nullable=False),
                                                 pa.field("name", pa.string())])


def test_nested_types():
    assert arrow_type(ArrayType(DoubleType(), False)) == pa.list_(pa.field("element", pa.float64(), nullable=False))
    assert arrow_type(MapType(StringType(), DoubleType())) == pa.map_(pa.string(), pa.float64())
    assert arrow_type(DecimalType(10, 2)) == pa.decimal128(10, 2)
    inner = StructType([StructField("x", DoubleType())])
    assert arrow_type(inner) == pa.struct([pa.field("x", pa.float64())])


def test_the_inventory_schema_is_the_same_in_spark_and_arrow():
    assert to_arrow_schema(INVENTORY_SPARK_SCHEMA) == INVENTORY_SCHEMA


@pytest.mark.parametrize("schema", [PARSED, PIXEL_STATS], ids=["PARSED", "PIXEL_STATS"])
def test_every_field_of_the_job_schemas_converts(schema):
    converted = to_arrow_schema(schema)
    assert converted.names == schema.names
    assert [f.nullable for f in converted] == [f.nullable for f in schema.fields]
