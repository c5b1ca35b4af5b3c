"""Access to transformers models: every name that differs between releases (``compat``), finding a
Speech LM's decoder, layers and audio placeholder id (``parts``), and tiny models of the real
classes for the demo, tests and CPU benchmarks (``tiny``). Imports nothing else of this package."""
