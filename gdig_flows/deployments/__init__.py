"""Prefect deployments of gdig: prefect.yaml (work pool + worker) and serve.py (served locally)."""
