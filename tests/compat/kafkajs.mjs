// kafkajs against bus-broker: one step per run, `node kafkajs.mjs '{"step": ..., ...}'`
// (tests/compat/test_kafkajs.py drives it). Prints its result as one JSON line on stdout; an
// assertion that does not hold exits 1 with the reason on stderr. Every step has a deadline.
import assert from "node:assert/strict";
import kafkajs from "kafkajs";

const { Kafka, CompressionTypes, ConfigResourceTypes, logLevel } = kafkajs;
const args = JSON.parse(process.argv[2]);
const TOPIC = args.topic;

const kafka = new Kafka({
  clientId: "compat-kafkajs",
  brokers: [args.bootstrap],
  sasl: { mechanism: args.mechanism || "scram-sha-256", username: args.user, password: args.password },
  ssl: false,
  connectionTimeout: 5000,
  retry: { retries: 8, initialRetryTime: 100, maxRetryTime: 2000 },
  logLevel: logLevel.ERROR,
  // kafkajs logs to the console: keep stdout for the result.
  logCreator: () => ({ namespace, log }) => process.stderr.write(`${namespace}: ${log.message}\n`),
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(cond, ms, what) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

async function withAdmin(fn) {
  const admin = kafka.admin();
  await admin.connect();
  try {
    return await fn(admin);
  } finally {
    await admin.disconnect();
  }
}

async function createTopic(topic, partitions) {
  await withAdmin((a) => a.createTopics({ topics: [{ topic, numPartitions: partitions }] }));
}

// Sends messages (array of {key, value, headers, timestamp}) with an idempotent producer,
// acks=all and gzip, one send per entry of `batches`; returns the record metadata.
async function produce(topic, batches, opts = {}) {
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, ...opts });
  await producer.connect();
  const meta = [];
  try {
    for (const messages of batches) {
      meta.push(...(await producer.send({ topic, acks: -1, compression: CompressionTypes.GZIP, messages })));
    }
  } finally {
    await producer.disconnect();
  }
  return meta;
}

// Consumes with a group until `n` messages came (or `done(msgs)`); returns them.
async function consume(topic, groupId, n, { fromBeginning = true, seek = null, readUncommitted } = {}) {
  const consumer = kafka.consumer({ groupId, readUncommitted, maxWaitTimeInMs: 200 });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning });
  const got = [];
  await consumer.run({
    eachMessage: async ({ partition, message }) => {
      got.push({
        partition,
        offset: Number(message.offset),
        key: message.key ? message.key.toString() : null,
        value: message.value.toString(),
        headers: Object.fromEntries(Object.entries(message.headers || {}).map(([k, v]) => [k, v.toString()])),
      });
    },
  });
  if (seek) consumer.seek(seek);
  await until(() => got.length >= n, 20000, `${n} messages of ${topic} (got ${got.length})`);
  await consumer.disconnect(); // commits what was consumed
  return got;
}

const steps = {
  async sasl() {
    // SCRAM-SHA-512 too (the other steps use SCRAM-SHA-256).
    const k = new Kafka({ brokers: [args.bootstrap], ssl: false, logLevel: logLevel.NOTHING,
      sasl: { mechanism: "scram-sha-512", username: args.user, password: args.password } });
    const admin = k.admin();
    await admin.connect();
    const cluster = await admin.describeCluster();
    await admin.disconnect();
    assert.equal(cluster.brokers.length, 1);
    const bad = new Kafka({ brokers: [args.bootstrap], ssl: false, logLevel: logLevel.NOTHING, retry: { retries: 0 },
      sasl: { mechanism: "scram-sha-256", username: args.user, password: "wrong" } }).admin();
    await assert.rejects(bad.connect(), /SASL SCRAM SHA256 authentication failed|invalid credentials/i);
    return { brokers: cluster.brokers.length };
  },

  async admin() {
    return withAdmin(async (admin) => {
      const created = await admin.createTopics({
        topics: [{ topic: TOPIC, numPartitions: 3, configEntries: [{ name: "retention.ms", value: "3600000" }] }],
      });
      assert.equal(created, true);
      assert.ok((await admin.listTopics()).includes(TOPIC));
      const md = await admin.fetchTopicMetadata({ topics: [TOPIC] });
      assert.equal(md.topics[0].partitions.length, 3);
      const cfg = await admin.describeConfigs({
        resources: [{ type: ConfigResourceTypes.TOPIC, name: TOPIC, configNames: ["retention.ms"] }],
        includeSynonyms: false,
      });
      const entry = cfg.resources[0].configEntries.find((e) => e.configName === "retention.ms");
      assert.equal(entry.configValue, "3600000");
      await admin.createPartitions({ topicPartitions: [{ topic: TOPIC, count: 4 }] });
      assert.equal((await admin.fetchTopicMetadata({ topics: [TOPIC] })).topics[0].partitions.length, 4);
      await admin.deleteTopics({ topics: [TOPIC], timeout: 5000 });
      assert.ok(!(await admin.listTopics()).includes(TOPIC));
      return { ok: true };
    });
  },

  async produce() {
    await createTopic(TOPIC, 3);
    const msgs = Array.from({ length: 30 }, (_, i) => ({ key: `k${i % 7}`, value: `v${i}`, headers: { h: `x${i}` } }));
    const meta = await produce(TOPIC, [msgs.slice(0, 10), msgs.slice(10)]);
    assert.ok(meta.every((m) => m.errorCode === 0));
    const got = await consume(TOPIC, "g-produce", 30);
    assert.equal(got.length, 30);
    for (const m of got) {
      const i = Number(m.value.slice(1));
      assert.equal(m.key, `k${i % 7}`);
      assert.equal(m.headers.h, `x${i}`);
    }
    assert.equal(new Set(got.map((m) => m.value)).size, 30);
    return { consumed: got.length };
  },

  async group_resume() {
    await createTopic(TOPIC, 2);
    await produce(TOPIC, [Array.from({ length: 20 }, (_, i) => ({ key: `k${i}`, value: `a${i}` }))]);
    const first = await consume(TOPIC, "g-resume", 20);
    assert.equal(first.length, 20);
    const committed = await withAdmin((a) => a.fetchOffsets({ groupId: "g-resume", topics: [TOPIC] }));
    const sum = committed[0].partitions.reduce((s, p) => s + Number(p.offset), 0);
    assert.equal(sum, 20, JSON.stringify(committed));
    await produce(TOPIC, [Array.from({ length: 10 }, (_, i) => ({ key: `k${i}`, value: `b${i}` }))]);
    const second = await consume(TOPIC, "g-resume", 10);
    assert.deepEqual(second.map((m) => m.value[0]), Array(10).fill("b"), "resumed from the committed offsets");
    return { first: first.length, second: second.length };
  },

  async seek() {
    await createTopic(TOPIC, 1);
    await produce(TOPIC, [Array.from({ length: 10 }, (_, i) => ({ value: `s${i}` }))]);
    const got = await consume(TOPIC, "g-seek", 3, { seek: { topic: TOPIC, partition: 0, offset: "7" } });
    assert.deepEqual(got.map((m) => m.offset), [7, 8, 9]);
    return { offsets: got.map((m) => m.offset) };
  },

  async offsets_by_time() {
    await createTopic(TOPIC, 1);
    const t0 = Date.now() - 60000;
    const batch = (t, tag) => Array.from({ length: 3 }, (_, i) => ({ value: `${tag}${i}`, timestamp: String(t) }));
    await produce(TOPIC, [batch(t0, "a"), batch(t0 + 10000, "b")]);
    const at = (ts) => withAdmin((a) => a.fetchTopicOffsetsByTimestamp(TOPIC, ts));
    assert.equal((await at(t0))[0].offset, "0");
    assert.equal((await at(t0 + 5000))[0].offset, "3");
    return { ok: true };
  },

  async offsets_by_time_exact() {
    // kafkajs turns Kafka's -1 past the end into the log end itself: only the precision shows.
    await createTopic(TOPIC, 1);
    const t0 = Date.now() - 60000;
    await produce(TOPIC, [Array.from({ length: 10 }, (_, i) => ({ value: `t${i}`, timestamp: String(t0 + i * 1000) }))]);
    const got = await withAdmin((a) => a.fetchTopicOffsetsByTimestamp(TOPIC, t0 + 5000));
    assert.equal(got[0].offset, "5", "the first record with timestamp >= t, inside the batch");
    return { ok: true };
  },

  async rebalance() {
    await createTopic(TOPIC, 4);
    const members = [0, 1].map(() => kafka.consumer({ groupId: "g-two", maxWaitTimeInMs: 200, heartbeatInterval: 500 }));
    const got = [[], []];
    const assigned = [null, null];
    const joins = [0, 0];
    for (const [i, c] of members.entries()) {
      c.on(c.events.GROUP_JOIN, (e) => {
        joins[i] += 1;
        assigned[i] = (e.payload.memberAssignment[TOPIC] || []).length;
      });
      await c.connect();
      await c.subscribe({ topic: TOPIC, fromBeginning: true });
      await c.run({ eachMessage: async ({ partition, message }) => got[i].push(`${partition}:${message.offset}`) });
      if (i === 0) await until(() => assigned[0] === 4, 20000, "the first member to own all 4 partitions");
    }
    // The second member's join makes the group rebalance: two and two.
    await until(() => assigned[0] === 2 && assigned[1] === 2, 30000, `a rebalance to 2+2 (have ${assigned})`);
    await produce(TOPIC, [Array.from({ length: 40 }, (_, i) => ({ key: `key-${i}`, value: `r${i}` }))]);
    await until(() => got[0].length + got[1].length >= 40, 20000, "40 records across the two members");
    for (const c of members) await c.disconnect();
    const all = [...got[0], ...got[1]];
    assert.equal(new Set(all).size, all.length, "no record read twice");
    assert.equal(all.length, 40);
    assert.ok(got[0].length > 0 && got[1].length > 0, `both members read: ${got[0].length}/${got[1].length}`);
    return { joins, counts: [got[0].length, got[1].length] };
  },

  // kill_restart: "produce_n" before the SIGKILL, "count" after it (test_kafkajs.py kills).
  async produce_n() {
    if (args.create) await createTopic(TOPIC, 3);
    const msgs = Array.from({ length: args.n }, (_, i) => ({ key: `k${i}`, value: `${args.tag}${i}` }));
    let acked = 0;
    for (let i = 0; i < msgs.length; i += 500) {
      const batch = msgs.slice(i, i + 500);
      const meta = await produce(TOPIC, [batch]);
      assert.ok(meta.every((m) => m.errorCode === 0));
      acked += batch.length;
    }
    return { acked };
  },

  async count() {
    const got = await consume(TOPIC, `g-count-${args.n}`, args.n);
    const values = new Set(got.map((m) => m.value));
    return { records: got.length, distinct: values.size };
  },

  async reset_offsets() {
    // resetOffsets commits -1 (latest) or -2 (earliest) as they are and Kafka stores them. A
    // kafkajs consumer reads any negative committed offset as "none" and starts from its own
    // fromBeginning (as the Java consumer does); kafkajs turns a stored -2/-1 into the log
    // start/end with fetchOffsets({ resolveOffsets: true }), which commits that. Each reset or
    // resolve takes kafkajs ~5 s (its paused consumer waits out maxWaitTime for one fetch).
    await createTopic(TOPIC, 1);
    await produce(TOPIC, [Array.from({ length: 10 }, (_, i) => ({ value: `o${i}` }))]);
    await consume(TOPIC, "g-reset", 10);
    const committed = (a, resolveOffsets = false) =>
      a.fetchOffsets({ groupId: "g-reset", topics: [TOPIC], resolveOffsets }).then((r) => r[0].partitions[0].offset);
    const seen = await withAdmin(async (a) => {
      const out = [await committed(a)];
      await a.resetOffsets({ groupId: "g-reset", topic: TOPIC, earliest: false });
      out.push(await committed(a));
      await a.resetOffsets({ groupId: "g-reset", topic: TOPIC, earliest: true });
      out.push(await committed(a), await committed(a, true), await committed(a));
      return out;
    });
    assert.deepEqual(seen, ["10", "-1", "-2", "0", "0"], "committed offsets read back");
    // The group resumes at the log start although this consumer would start from the end.
    const again = await consume(TOPIC, "g-reset", 10, { fromBeginning: false });
    assert.deepEqual(again.map((m) => m.offset), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    return { seen };
  },

  async alter_configs() {
    await createTopic(TOPIC, 1);
    return withAdmin(async (a) => {
      await a.alterConfigs({ validateOnly: false,
        resources: [{ type: ConfigResourceTypes.TOPIC, name: TOPIC, configEntries: [{ name: "retention.ms", value: "7200000" }] }] });
      const cfg = await a.describeConfigs({ resources: [{ type: ConfigResourceTypes.TOPIC, name: TOPIC, configNames: ["retention.ms"] }], includeSynonyms: false });
      assert.equal(cfg.resources[0].configEntries.find((e) => e.configName === "retention.ms").configValue, "7200000");
      return { ok: true };
    });
  },

  async delete_groups() {
    await createTopic(TOPIC, 1);
    await produce(TOPIC, [[{ value: "d" }]]);
    await consume(TOPIC, "g-delete", 1);
    return withAdmin(async (a) => {
      await a.deleteGroups(["g-delete"]);
      const { groups } = await a.listGroups();
      assert.ok(!groups.some((g) => g.groupId === "g-delete"));
      return { ok: true };
    });
  },

  async delete_records() {
    await createTopic(TOPIC, 1);
    await produce(TOPIC, [Array.from({ length: 10 }, (_, i) => ({ value: `d${i}` }))]);
    return withAdmin(async (a) => {
      await a.fetchTopicMetadata({ topics: [TOPIC] }); // kafkajs needs the leaders known
      await a.deleteTopicRecords({ topic: TOPIC, partitions: [{ partition: 0, offset: "5" }] });
      const offs = await a.fetchTopicOffsets(TOPIC);
      assert.equal(offs[0].low, "5");
      return { ok: true };
    });
  },

  async transactions() {
    await createTopic(TOPIC, 1);
    const producer = kafka.producer({ transactionalId: "compat-tx", idempotent: true, maxInFlightRequests: 1,
      retry: { retries: 1 } });
    await producer.connect();
    const tx = await producer.transaction();
    await tx.send({ topic: TOPIC, messages: [{ value: "t0" }, { value: "t1" }] });
    await tx.commit();
    await producer.disconnect();
    const got = await consume(TOPIC, "g-tx", 2, { readUncommitted: false });
    assert.deepEqual(got.map((m) => m.value), ["t0", "t1"]);
    return { ok: true };
  },
};

const step = steps[args.step];
if (!step) {
  process.stderr.write(`unknown step ${args.step}\n`);
  process.exit(2);
}
const deadline = setTimeout(() => {
  process.stderr.write(`step ${args.step}: no result after ${args.timeout_ms} ms\n`);
  process.exit(1);
}, args.timeout_ms || 30000);
try {
  const result = await step();
  clearTimeout(deadline);
  process.stdout.write(JSON.stringify(result) + "\n");
  process.exit(0);
} catch (e) {
  // The stack, then the reason on the last line (what the suite reports).
  process.stderr.write(`${e.stack || e}\nstep ${args.step}: ${String(e.message || e).split("\n")[0]}\n`);
  process.exit(1);
}
