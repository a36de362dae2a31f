"""Long-running work: batch question answering, index snapshots and re-indexing, exports.

Each job reports progress, survives a crash of the process running it (its state lives in
the data dir, or S3/Redis when configured) and runs at a bounded share of the model
services so that interactive traffic keeps its latency.
"""
