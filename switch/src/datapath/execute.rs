//! Executes a pipeline result on one packet: rewrites, push/pop, TTL, groups, meters, queues, outputs.
