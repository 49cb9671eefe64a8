"""The Ray executor's parts: streams run as Ray jobs on a cluster (standard library only).

`jobs` is the Job Submission REST client (submit, poll, stop, adopt, logs, delete, the API version
and the nodes), `tail` copies a job's log into the stream's local log (WebSocket tail, `GET /logs`
as the fallback), `package` ships the runtime package to the nodes (`py_modules`, never the
repository). The job's entrypoint is `_orchestrate_kit.remote.worker`. Nothing here imports Ray:
the orchestrator speaks HTTP; only the cluster's nodes have Ray installed.
"""
