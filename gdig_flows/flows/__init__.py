"""Prefect flows of gdig: select, run (select + finetune + evaluate + report), demo.

Flows only chain tasks (gdig_flows/tasks/); each reads like the method in docs/DESIGN.md.
Parameters: the config file path and a list of KEY=VALUE overrides.
"""
