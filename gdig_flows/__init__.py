"""The Prefect side of gdig: tasks (one per declared stage), the flows that walk the stage graph
with them, and the deployments; one gdig-owned top-level name. gdig itself never imports it."""
