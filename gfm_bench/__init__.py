"""GFM-Bench: the benchmark harness for geofm encoders (dataset registry, protocols, metrics).

Depends on geofm, never the reverse. The harness itself arrives with the GFM-Bench issue;
this package holds the ``gfm-bench`` entry point until then.
"""
