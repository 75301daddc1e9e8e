"""One cheap pass over a view's rows (or events) and the spine that sizes the join plans.

    key_shape(["site"], rows, "__fs_known", "__fs_spine", [timedelta(hours=3)])
    →  WITH "r" AS (SELECT site, count(*) AS n, epoch_us(max(t)) - epoch_us(min(t)) AS span FROM (<rows>)
                    GROUP BY site),
            "s" AS (SELECT site, count(*) AS n FROM "__fs_spine" WHERE site IS NOT NULL GROUP BY site)
       SELECT (SELECT sum(n) FROM s), (SELECT sum(n) FROM r), (SELECT count(*) FROM r), (SELECT sum(span) FROM r),
              sum(s.n * r.n), sum(s.n * r.n * least(1, 10800000000 / greatest(r.span, 1)))
       FROM r JOIN s ON r.site = s.site

`sum(s.n * r.n)` is what a hash join on the keys alone compares: every spine row of a key with
every row of that key, however far apart in time. With few keys of many rows that is the whole
cost, not the pairs that survive the time condition; the last sums estimate the pairs within a
time range of each width (rows spread evenly over their key's span), which is what a join that
also matches time buckets compares.
"""

from __future__ import annotations

from datetime import timedelta

from sqlglot import exp

__all__ = ["key_shape"]


def key_shape(keys: list[str], rows: exp.Query, time: str, spine: str, widths: list[timedelta]) -> exp.Select:
    """Spine rows with keys, rows, keys, summed key spans (µs), pairs of equal keys, and per width
    the estimated pairs of equal keys at most that far apart (see the module doc)."""
    def columns() -> list[exp.Column]:
        return [exp.column(k, quoted=True) for k in keys]

    moment = exp.column(time, quoted=True)
    span = exp.Sub(this=exp.func("epoch_us", exp.Max(this=moment)),
                   expression=exp.func("epoch_us", exp.Min(this=moment.copy())))
    per_key = exp.select(*columns(), exp.alias_(exp.Count(this=exp.Star()), "n", quoted=True),
                         exp.alias_(span, "span", quoted=True)).from_(exp.Subquery(
        this=rows, alias=exp.TableAlias(this=exp.to_identifier("p", quoted=True)))).where(
        exp.and_(*[exp.Not(this=exp.Is(this=k, expression=exp.Null())) for k in columns()])).group_by(*columns())
    asked = exp.select(*columns(), exp.alias_(exp.Count(this=exp.Star()), "n", quoted=True)) \
        .from_(exp.to_table(spine, quoted=True)).where(
        exp.and_(*[exp.Not(this=exp.Is(this=k, expression=exp.Null())) for k in columns()])).group_by(*columns())
    product = exp.Mul(this=exp.column("n", "s", quoted=True), expression=exp.column("n", "r", quoted=True))
    near = [exp.Sum(this=exp.Mul(this=product.copy(), expression=exp.func("least", exp.Literal.number(1), exp.Div(
        this=exp.Literal.number(width // timedelta(microseconds=1)),
        expression=exp.func("greatest", exp.column("span", "r", quoted=True), exp.Literal.number(1))))))
        for width in widths]
    totals = [exp.Subquery(this=exp.select(expression).from_(exp.to_table(name, quoted=True)))
              for name, expression in (("__fs_s", exp.Sum(this=exp.column("n", quoted=True))),
                                       ("__fs_r", exp.Sum(this=exp.column("n", quoted=True))),
                                       ("__fs_r", exp.Count(this=exp.Star())),
                                       ("__fs_r", exp.Sum(this=exp.column("span", quoted=True))))]
    query = exp.select(*totals, exp.Sum(this=product), *near).from_(
        exp.to_table("__fs_r", quoted=True).as_("r", quoted=True)).join(
        exp.to_table("__fs_s", quoted=True).as_("s", quoted=True),
        on=exp.and_(*[exp.EQ(this=exp.column(k, "r", quoted=True), expression=exp.column(k, "s", quoted=True))
                      for k in keys]))
    query.set("with_", exp.With(expressions=[
        exp.CTE(this=per_key, alias=exp.TableAlias(this=exp.to_identifier("__fs_r", quoted=True))),
        exp.CTE(this=asked, alias=exp.TableAlias(this=exp.to_identifier("__fs_s", quoted=True)))]))
    return query
