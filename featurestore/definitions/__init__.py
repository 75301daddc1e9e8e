"""Feature views as data scientists write them: one `.sql` file each, read and checked on their own.

    loader.load_definitions(folder)       the files: annotations (`-- ttl: 3h`) and the one SELECT
    spec.build_view(definition)           a FeatureView: entity, time rules, features, owner, deprecation
    graph.build_graph(views, sources)     which view reads which, in dependency order, cycles refused
    selection.select_features(views, …)   `view.feature` / `view.*` references resolved to output names

Nothing here touches data; binding views against their sources happens in `featurestore.project`.
"""
