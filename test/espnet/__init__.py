"""Tests that need ESPnet itself (run in tools/venv-espnet; see conftest.py)."""
