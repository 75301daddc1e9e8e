"""The feature catalog page: every view, its features, owners, consumers and statistics, as one
self-contained HTML page (`featurestore docs`, and `GET /catalog` of the server)."""
