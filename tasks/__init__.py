"""The work of each stage: Prefect tasks over lake shards, with their pure helpers beside them."""
