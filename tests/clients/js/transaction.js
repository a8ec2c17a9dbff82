// Writes with a kafkajs transactional producer: one committed and one aborted transaction
// of `count` messages each to `topic`; prints {committed, aborted} offsets.
const { args, client, finish } = require('./common');

async function main() {
  const a = args();
  const producer = client(a.brokers, a).producer({
    transactionalId: a.transactionalId,
    idempotent: true,
    maxInFlightRequests: 1,
  });
  await producer.connect();
  const out = {};
  for (const [outcome, prefix] of [['committed', 'js-commit'], ['aborted', 'js-abort']]) {
    const transaction = await producer.transaction();
    const messages = Array.from({ length: a.count }, (_, i) => ({ value: `${prefix}-${i}`, partition: 0 }));
    const result = await transaction.send({ topic: a.topic, messages });
    out[outcome] = result.map((r) => r.baseOffset);
    if (outcome === 'committed') {
      await transaction.commit();
    } else {
      await transaction.abort();
    }
  }
  await producer.disconnect();
  return out;
}

finish(main());
