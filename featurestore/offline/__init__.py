"""The offline path: training frames, point-in-time correct, in DuckDB (or on Spark).

    frames.training_frame(project, spine, ["view.*"])   one statement per frame (frames.py)
    joins                    how each view is joined, from the shape of its data (cost model)
    rows / sources           a view's rows and events, read from its sources by name
    cache / changes          cached validity intervals of snapshot views, and when sources changed
    snapshots                frames saved with their manifest, and loaded back verified
    spark_frame              the same frame computed by Apache Spark
"""
