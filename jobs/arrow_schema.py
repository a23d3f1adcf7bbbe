"""The Arrow schema of a Spark StructType, built here rather than by PySpark.

`pyspark.sql.pandas.types.to_arrow_schema` is internal and changed in Spark 4.2:
its `timestamp_utc=True` default became a keyword-only `timezone=None` that
TimestampType columns require (an AssertionError without it), and fields gained
Spark's metadata. This builds what Spark expects back from `mapInArrow` and a
Python data source on every 4.x line: TimestampType as UTC microseconds (what
4.0/4.1 gave by default and 4.2+ workers use), nullability from the fields.
"""
from __future__ import annotations

import pyarrow as pa
from pyspark.sql.types import (ArrayType, BinaryType, BooleanType, ByteType, DataType, DateType,
                               DayTimeIntervalType, DecimalType, DoubleType, FloatType, IntegerType,
                               LongType, MapType, NullType, ShortType, StringType, StructType,
                               TimestampNTZType, TimestampType)

_PRIMITIVES = (
    (BooleanType, pa.bool_()),
    (ByteType, pa.int8()),
    (ShortType, pa.int16()),
    (IntegerType, pa.int32()),
    (LongType, pa.int64()),
    (FloatType, pa.float32()),
    (DoubleType, pa.float64()),
    (StringType, pa.string()),
    (BinaryType, pa.binary()),
    (DateType, pa.date32()),
    (TimestampNTZType, pa.timestamp("us")),
    (TimestampType, pa.timestamp("us", tz="UTC")),
    (DayTimeIntervalType, pa.duration("us")),
    (NullType, pa.null()),
)


def arrow_type(data_type: DataType) -> pa.DataType:
    """The Arrow type Spark exchanges with Python workers for `data_type`."""
    if isinstance(data_type, DecimalType):
        return pa.decimal128(data_type.precision, data_type.scale)
    if isinstance(data_type, ArrayType):
        return pa.list_(pa.field("element", arrow_type(data_type.elementType),
                                 nullable=data_type.containsNull))
    if isinstance(data_type, MapType):
        return pa.map_(pa.field("key", arrow_type(data_type.keyType), nullable=False),
                       pa.field("value", arrow_type(data_type.valueType),
                                nullable=data_type.valueContainsNull))
    if isinstance(data_type, StructType):
        return pa.struct(_fields(data_type))
    for spark_type, arrow in _PRIMITIVES:
        if isinstance(data_type, spark_type):
            return arrow
    raise TypeError(f"no Arrow type for Spark type {data_type.simpleString()}")


def to_arrow_schema(schema: StructType) -> pa.Schema:
    """The Arrow schema of a Spark StructType (no Spark session needed: usable in workers)."""
    return pa.schema(_fields(schema))


def _fields(schema: StructType) -> list[pa.Field]:
    return [pa.field(f.name, arrow_type(f.dataType), nullable=f.nullable) for f in schema.fields]
