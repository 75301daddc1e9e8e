"""What the store knows about features beyond their values: who owns them, who reads them, what a
change does, what nobody uses, and how their values are distributed.

    registry   the applied definitions in PostgreSQL (`apply`), with git commits
    usage      reads recorded per consumer (batched, spooled when PostgreSQL is away)
    plan       what a pull request changes, and whom it touches
    unused     features nobody read lately, for clean-up
    describe   one view: annotations, data span, online freshness, consumers
    stats      feature statistics offline, and drift of online values against a training snapshot
"""

# A recorded reader counts as a consumer for this long after its last read (plan, describe, unused).
# Here, in the package, so the CLI can name it without importing the modules.
CONSUMER_DAYS = 30
