"""The cost benchmark's library: inputs (models, prompts), measurement (one run), results (JSON, markdown)."""
