// Exercises the kafkajs admin client: create, metadata, configs, offsets, delete.
const { args, client, finish } = require('./common');
const { ConfigResourceTypes } = require('kafkajs');

async function main() {
  const a = args();
  const admin = client(a.brokers, a).admin();
  await admin.connect();
  const created = await admin.createTopics({
    topics: [{ topic: a.topic, numPartitions: 3, replicationFactor: 1, configEntries: [{ name: 'retention.ms', value: '123456' }] }],
    waitForLeaders: true,
  });
  const metadata = await admin.fetchTopicMetadata({ topics: [a.topic] });
  const configs = await admin.describeConfigs({
    resources: [{ type: ConfigResourceTypes.TOPIC, name: a.topic, configNames: ['retention.ms'] }],
    includeSynonyms: false,
  });
  const listed = await admin.listTopics();
  const offsets = (await admin.fetchTopicOffsets(a.topic)).sort((x, y) => x.partition - y.partition);
  await admin.deleteTopics({ topics: [a.topic] });
  const after = await admin.listTopics();
  await admin.disconnect();
  return {
    created,
    partitions: metadata.topics[0].partitions.length,
    retention: configs.resources[0].configEntries[0].configValue,
    listed,
    offsets,
    deleted: !after.includes(a.topic),
  };
}

finish(main());
