"""`triage sql` answers questions about the result tables; it is not a Spark
shell. A statement runs only when Spark's parser makes a plain query of it
over the registered tables (or SHOW TABLES / DESCRIBE one of them): no writes,
no commands, no settings, no files read by path, no Java reflection.

The check reads the parsed (not yet analysed) plan as Spark prints it, because
Spark executes commands as soon as `spark.sql` is called."""
from __future__ import annotations

import re

# Plan nodes a query (or SHOW TABLES / DESCRIBE) parses into. Anything else (an
# insert, a command, a cache or a view definition) is refused, naming the node.
QUERY_NODES = frozenset({
    "Project", "Filter", "Aggregate", "Sort", "GlobalLimit", "LocalLimit", "Limit", "Offset", "Tail",
    "Distinct", "Deduplicate", "Union", "Intersect", "Except", "Join", "LateralJoin", "SubqueryAlias",
    "CTE", "UnresolvedWith", "WithCTE", "CTERelationDef", "CTERelationRef", "OneRowRelation",
    "LocalRelation", "UnresolvedInlineTable", "Window", "WithWindowDefinition", "Generate", "Pivot",
    "Unpivot", "Sample", "Repartition", "RepartitionByExpression", "RebalancePartitions", "UnresolvedHint",
    "Expand", "UnresolvedSubqueryColumnAliases", "UnresolvedTVFAliases", "UnresolvedHaving",
    "UnresolvedRelation", "UnresolvedTableValuedFunction",
    "ShowTables", "CurrentNamespace$", "DescribeRelation", "UnresolvedTableOrView",
})
# Table-valued functions that read nothing outside the query.
SAFE_TABLE_FUNCTIONS = frozenset({"range", "explode", "explode_outer", "inline", "inline_outer",
                                  "posexplode", "posexplode_outer", "stack"})
# Functions that call into the JVM (read environment variables, files, anything).
REFLECTION = re.compile(r"\b(reflect|java_method|try_reflect)\s*\(", re.IGNORECASE)
STRING_LITERAL = re.compile(r"'(?:[^'\\]|\\.|'')*'|\"(?:[^\"\\]|\\.)*\"")
COMMENT = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)
NODE = re.compile(r"^[\s:|+\-']*'?(?P<name>[A-Za-z$][\w$]*)")
RELATION = re.compile(r"UnresolvedRelation \[(?P<parts>[^\]]*)\]")
TABLE_FUNCTION = re.compile(r"UnresolvedTableValuedFunction \[(?P<name>[^\]]*)\]")


def refusal(query: str, parsed_plan: str) -> str | None:
    """Why `query` may not run (one line), or None. `parsed_plan` is Spark's
    `sqlParser().parsePlan(query).treeString()`, subqueries included."""
    code = STRING_LITERAL.sub("''", COMMENT.sub(" ", query)).replace("`", "")
    if REFLECTION.search(code):
        return "reflection functions (reflect, java_method) are not allowed"
    for line in parsed_plan.splitlines():
        found = NODE.match(line)
        if not found:
            continue
        name = found.group("name")
        if name not in QUERY_NODES:
            return f"only queries run here (SELECT, WITH, SHOW TABLES, DESCRIBE); this statement parses as {name}"
        if name == "UnresolvedRelation":
            parts = RELATION.search(line).group("parts").split(", ")
            if len(parts) != 1:
                return f"tables are read by name only, not by path or format: {'.'.join(parts)}"
        if name == "UnresolvedTableValuedFunction":
            function = TABLE_FUNCTION.search(line).group("name")
            if function.lower() not in SAFE_TABLE_FUNCTIONS:
                return f"table function {function} is not allowed"
    return None


def parsed_plan(spark, query: str) -> str:
    """Spark's parsed plan of `query` as text (raises Spark's ParseException)."""
    return spark._jsparkSession.sessionState().sqlParser().parsePlan(query).treeString()


class SqlRefused(Exception):
    """A statement `triage sql` does not run, or cannot plan: one line for the user."""


def check(spark, query: str, tables: list[str]) -> None:
    """Raise SqlRefused unless `query` is a query over the registered tables."""
    try:
        plan = parsed_plan(spark, query)
    except Exception as exc:  # Spark's ParseException, through Py4J
        raise SqlRefused(f"cannot parse the query: {_first_line(exc)}") from None
    problem = refusal(query, plan)
    if problem:
        raise SqlRefused(f"{problem}. Tables: {', '.join(tables)}")


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0][:300] if lines else type(exc).__name__
