// kafkajs's transactional producer against bus-broker (test_broker_txn.py drives it):
// `node broker_txn_kafkajs.mjs KAFKAJS_DIR '{"bootstrap": ...}'`. kafkajs comes from the
// compatibility suite's install (tests/compat/node_modules, pinned by tests/compat/package.json).
// A committed and an aborted transaction, offsets sent with a commit, then a read_committed
// consumer that must see the committed records only. Prints one JSON line; exits 1 with the
// reason on stderr.
import assert from "node:assert/strict";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { Kafka, logLevel } = require(process.argv[2]);
const args = JSON.parse(process.argv[3]);

const kafka = new Kafka({
  clientId: "txn-kafkajs",
  brokers: [args.bootstrap],
  connectionTimeout: 5000,
  retry: { retries: 8, initialRetryTime: 100, maxRetryTime: 2000 },
  logLevel: logLevel.ERROR,
  logCreator: () => ({ namespace, log }) => process.stderr.write(`${namespace}: ${log.message}\n`),
});
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main() {
  const producer = kafka.producer({ transactionalId: "tx-kafkajs", idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  let tx = await producer.transaction();
  await tx.send({ topic: "js", messages: [0, 1, 2, 3, 4].map((i) => ({ value: `c-${i}` })) });
  await tx.sendOffsets({ consumerGroupId: "js-eos", topics: [{ topic: "js-in", partitions: [{ partition: 0, offset: "3" }] }] });
  await tx.commit();
  tx = await producer.transaction();
  await tx.send({ topic: "js", messages: [0, 1, 2].map((i) => ({ value: `a-${i}` })) });
  await tx.sendOffsets({ consumerGroupId: "js-eos", topics: [{ topic: "js-in", partitions: [{ partition: 0, offset: "9" }] }] });
  await tx.abort();
  tx = await producer.transaction();
  await tx.send({ topic: "js", messages: [{ value: "c-5" }] });
  await tx.commit();
  await producer.disconnect();

  const admin = kafka.admin();
  await admin.connect();
  const offs = await admin.fetchOffsets({ groupId: "js-eos", topics: ["js-in"] });
  await admin.disconnect();
  assert.equal(offs[0].partitions[0].offset, "3", "the aborted transaction's offsets do not count");

  const seen = [];
  const consumer = kafka.consumer({ groupId: "js-read", readUncommitted: false });
  await consumer.connect();
  await consumer.subscribe({ topic: "js", fromBeginning: true });
  await consumer.run({ eachMessage: async ({ message }) => { seen.push(message.value.toString()); } });
  const end = Date.now() + 20000;
  while (seen.length < 6 && Date.now() < end) await sleep(50);
  await sleep(1000); // anything aborted would arrive among or right after these
  await consumer.disconnect();
  assert.deepEqual([...seen].sort(), ["c-0", "c-1", "c-2", "c-3", "c-4", "c-5"]); // two partitions
  return { ok: true, seen };
}

const deadline = setTimeout(() => {
  process.stderr.write("no result after 60 s\n");
  process.exit(1);
}, 60000);
try {
  const result = await main();
  clearTimeout(deadline);
  process.stdout.write(JSON.stringify(result) + "\n");
  process.exit(0);
} catch (e) {
  process.stderr.write(`${e.stack || e}\n`);
  process.exit(1);
}
