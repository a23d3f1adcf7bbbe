"""Robust z-scores within groups: one rule for every stage (pixel quality
groups, clusters), the same as `udfs/outliers.py robust_z` on numpy arrays.

z = 0.6745 (x − median) / MAD (Iglewicz and Hoaglin's modified z-score). When
more than half the group shares one value the MAD is 0; then the mean absolute
deviation stands in, z = (x − median) / (1.2533 · MeanAD), so a value away
from a group of identical ones still stands out (1.2533 = √(π/2) makes both
estimate the standard deviation of a normal). When every value is equal, z is
0. Groups smaller than `min_group` get no z (null): too few to compare with.
Medians are approximate (percentile_approx, accuracy 10,000), computed by
groupBy: no group is collected anywhere."""
from __future__ import annotations

from pyspark.sql import DataFrame, functions as F

MAD_SCALE = 0.6745
MEAN_AD_SCALE = 1.2533


def with_robust_z(df: DataFrame, column: str, group_by: list[str], min_group: int = 1,
                  name: str | None = None) -> DataFrame:
    """`df` plus `name` (default `<column>_z`), the robust z of `column` within
    the groups of `group_by` (null values form a group of their own)."""
    keys = [F.coalesce(F.col(c).cast("string"), F.lit("")).alias(f"_g_{c}") for c in group_by]
    key_names = [f"_g_{c}" for c in group_by]
    keyed = df.select("*", *keys)
    medians = keyed.groupBy(*key_names).agg(
        F.percentile_approx(column, 0.5, 10000).alias("_median"), F.count(column).alias("_n"))
    with_median = keyed.join(F.broadcast(medians), key_names, "left")
    deviation = F.abs(F.col(column) - F.col("_median"))
    spreads = with_median.groupBy(*key_names).agg(
        F.percentile_approx(deviation, 0.5, 10000).alias("_mad"), F.avg(deviation).alias("_mean_ad"))
    centred = F.col(column) - F.col("_median")
    z = (F.when(F.col("_n") < min_group, F.lit(None))
         .when(F.col("_mad") > 0, MAD_SCALE * centred / F.col("_mad"))
         .when(F.col("_mean_ad") > 0, centred / (MEAN_AD_SCALE * F.col("_mean_ad")))
         .when(F.col(column).isNotNull(), F.lit(0.0)))
    return (with_median.join(F.broadcast(spreads), key_names, "left")
            .withColumn(name or f"{column}_z", z.cast("double"))
            .drop("_median", "_n", "_mad", "_mean_ad", *key_names))
