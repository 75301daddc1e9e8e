"""The online path: the latest values in PostgreSQL, written by materialization and read by lookups.

    materialize.materialize(project, until)        write each view's latest rows (window views: recent events)
    expectations.check_expectations(...)           a view's `expect` conditions, before anything is written
    lookup.OnlineStore(project).lookup(entities, features, at=t)   the values as of t, as a frame would give them
"""
