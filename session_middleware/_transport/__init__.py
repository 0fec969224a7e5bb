"""The connections to Redis (single, Sentinel, Cluster; the multiplexed one, the local
cache), the round trips and replication waits made on them, and what the databases raise."""
