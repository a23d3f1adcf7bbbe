"""`triage sql`'s statement check on plans as Spark's parser prints them (no Spark needed)."""
from dicom_triage.jobs.sql_guard import refusal

QUERY = """'Sort ['n DESC NULLS LAST], true
+- 'Aggregate ['f.code], ['f.code, 'count(1) AS n#1]
   +- 'Generate 'explode('findings), false, t, ['f]
      +- 'UnresolvedRelation [pixel_stats], [], false"""
SUBQUERY_BY_PATH = """'Project [scalar-subquery#0 [] AS n#1]
:  +- 'Project [unresolvedalias('count(1))]
:     +- 'UnresolvedRelation [text, /etc/hosts], [], false
+- OneRowRelation"""
WITH_INSERT = """CTE [a]
:  +- 'SubqueryAlias a
:     +- 'Project [unresolvedalias(1)]
:        +- OneRowRelation
+- 'InsertIntoStatement 'UnresolvedRelation [t], [__required_write_privileges__=INSERT], false, false
   +- 'Project [*]
      +- 'UnresolvedRelation [a], [], false"""


def test_a_query_over_tables_runs():
    assert refusal("SELECT f.code, count(*) AS n FROM pixel_stats LATERAL VIEW explode(findings) t AS f", QUERY) is None


def test_a_path_in_a_subquery_is_refused():
    assert "by name only" in refusal("SELECT (SELECT count(*) FROM text.`/etc/hosts`) AS n", SUBQUERY_BY_PATH)


def test_an_insert_behind_a_cte_is_refused():
    assert "InsertIntoStatement" in refusal("WITH a AS (SELECT 1) INSERT INTO t SELECT * FROM a", WITH_INSERT)


def test_reflection_is_refused_even_quoted_or_beyond_the_printed_fields():
    plan = "'Project [unresolvedalias(1), ... 30 more fields]\n+- OneRowRelation"
    assert "reflection" in refusal("SELECT 1, " + "2, " * 30 + "`reflect` ('java.lang.System', 'getenv', 'X')", plan)
    # the word inside a string literal or a comment is not a call
    assert refusal("SELECT 'reflect(x)' AS s -- java_method(\n", "'Project [s]\n+- OneRowRelation") is None
