"""GFM-Bench: the benchmark harness for geofm encoders (Si et al., 2025).

* :mod:`gfm_bench.datasets`: readers of the seven GFM-Bench datasets in their file layouts;
  :mod:`gfm_bench.hub` downloads them from the Hugging Face Hub, :mod:`gfm_bench.archive`
  extracts them safely; :mod:`gfm_bench.generate` writes small trees in each layout for
  tests.
* :mod:`gfm_bench.encoders`: adapters (``features``, ``feature_maps``) for geofm registry
  models and timm models, with band matching.
* :mod:`gfm_bench.protocols`: linear probe, kNN, fine-tuning (full or LoRA), UPerNet.
* :mod:`gfm_bench.metrics`, :mod:`gfm_bench.results`, :mod:`gfm_bench.report`: scores, the
  locked resumable results file, tables and figures.
* :mod:`gfm_bench.suites`, :mod:`gfm_bench.mini`, :mod:`gfm_bench.cli`: what runs, the
  bundled-data suite and the ``gfm-bench`` command.

Depends on geofm, never the reverse.
"""
