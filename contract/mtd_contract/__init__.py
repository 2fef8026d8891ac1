"""The operator–trainer contract: what a Job is given and what it hands back.

Torch-free and in the base dependencies, so the operator, the trainer, the client and the
Job pods import one definition of the step configs, results, data records, metric names,
prompts, exit codes and the in-pod entrypoint.
"""
