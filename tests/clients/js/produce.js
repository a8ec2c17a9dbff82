// Produces base64-described messages with kafkajs; prints {count, offsets}.
const { args, client, codecs, fromB64, finish } = require('./common');

async function main() {
  const a = args();
  const producer = client(a.brokers, a).producer({ idempotent: !!a.idempotent, maxInFlightRequests: a.idempotent ? 1 : undefined });
  await producer.connect();
  const messages = a.messages.map((m) => {
    const headers = {};
    for (const [name, value] of m.headers || []) {
      (headers[name] = headers[name] || []).push(fromB64(value));
    }
    const out = { key: fromB64(m.key), value: fromB64(m.value), headers };
    if (m.partition !== undefined && m.partition !== null) out.partition = m.partition;
    if (m.timestamp) out.timestamp = String(m.timestamp);
    return out;
  });
  const offsets = [];
  const chunk = a.chunk || 500;
  for (let i = 0; i < messages.length; i += chunk) {
    const result = await producer.send({
      topic: a.topic,
      acks: a.acks === undefined ? -1 : a.acks,
      compression: codecs[a.codec || 'none'],
      messages: messages.slice(i, i + chunk),
    });
    offsets.push(...result.map((r) => [r.partition, r.baseOffset]));
  }
  await producer.disconnect();
  return { count: messages.length, offsets };
}

finish(main());
