"""The task gateway: ask a served multi-task model by task name, in front of any engine.

It reads the task catalogue (a file: the mounted ConfigMap on a cluster, or
`<workspace>/<name>/catalogue.json` locally), formats each task's prompt as training did,
routes to the task's adapter with each engine's own model names, and constrains
classification answers to the task's labels with the engine's documented guided decoding.
No torch, no mtd_trainer: it runs in the operator image.
"""
