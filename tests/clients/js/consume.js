// Consumes `count` messages in a kafkajs consumer group, committing as it goes; prints the
// values (base64) and the group's committed offsets afterwards (via the admin client).
const { args, client, toB64, finish } = require('./common');

async function main() {
  const a = args();
  const kafka = client(a.brokers, a);
  const consumer = kafka.consumer({ groupId: a.groupId, sessionTimeout: 10000, heartbeatInterval: 500, rebalanceTimeout: 10000 });
  await consumer.connect();
  await consumer.subscribe({ topic: a.topic, fromBeginning: true });
  const values = [];
  let done;
  const finished = new Promise((resolve) => { done = resolve; });
  await consumer.run({
    autoCommit: true,
    autoCommitInterval: 100,
    eachMessage: async ({ message }) => {
      values.push(toB64(message.value));
      if (values.length >= a.count) done();
    },
  });
  await finished;
  await consumer.commitOffsets([]);
  await consumer.disconnect();
  const admin = kafka.admin();
  await admin.connect();
  const offsets = await admin.fetchOffsets({ groupId: a.groupId, topics: [a.topic] });
  await admin.disconnect();
  const committed = {};
  for (const p of offsets[0].partitions) committed[String(p.partition)] = p.offset;
  return { values, committed };
}

finish(main());
