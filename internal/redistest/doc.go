// Package redistest gives tests a Redis to talk to.
//
// # Shared server
//
// [New] hands a test an isolated namespace on the shared Redis named by
// $REDIS_URL (default redis://127.0.0.1:6379): a unique key and channel
// prefix, and clients from [DB.Client]. Keys under the prefix are deleted
// when the test ends, so tests may run in parallel, in several packages at
// once, against one server.
//
// # Private servers
//
// [StartServer] runs a redis-server of the test's own on a free loopback
// port, for tests that stop and restart Redis. [StartCluster] runs a private
// three-master Redis Cluster; [StartClusterWith] adds replicas and a short
// cluster-node-timeout for failover tests ([Cluster.Primary],
// [Cluster.Failover], [Cluster.MigrateSlot]); [StartSentinel] runs a
// primary, a replica and three sentinels. They need redis-server (and
// redis-cli for a cluster, redis-sentinel for Sentinel) on $PATH and stop
// their processes when the test ends.
//
// # Skipping
//
// When no Redis can be had, the helpers skip the test with a reason, unless
// RTKIT_REQUIRE_REDIS=1 is set (as in CI): then they fail it, so that a
// missing server can't turn a suite green by skipping it.
package redistest
