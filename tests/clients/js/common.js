// Shared by the kafkajs scripts: argument parsing, a quiet client, base64 helpers.
const { Kafka, logLevel, CompressionTypes, CompressionCodecs } = require('kafkajs');
const SnappyCodec = require('kafkajs-snappy');

CompressionCodecs[CompressionTypes.Snappy] = SnappyCodec;

// Arguments arrive as JSON on stdin (they can be megabytes: too big for argv).
function args() {
  return JSON.parse(require('fs').readFileSync(0, 'utf8') || '{}');
}

function client(brokers) {
  return new Kafka({
    clientId: 'silt-tests',
    brokers,
    logLevel: logLevel.WARN,
    retry: { retries: 8, initialRetryTime: 100 },
  });
}

const codecs = {
  none: CompressionTypes.None,
  gzip: CompressionTypes.GZIP,
  snappy: CompressionTypes.Snappy,
};

const fromB64 = (s) => (s === null || s === undefined ? null : Buffer.from(s, 'base64'));
const toB64 = (b) => (b === null || b === undefined ? null : Buffer.from(b).toString('base64'));

function finish(promise) {
  promise
    .then((out) => {
      // Exit only once the output is flushed: a pipe takes 64 KiB at a time, and
      // process.exit() would cut the rest.
      process.stdout.write(JSON.stringify(out), () => process.exit(0));
    })
    .catch((e) => {
      console.error(e && e.stack ? e.stack : e);
      process.exit(1);
    });
}

module.exports = { args, client, codecs, fromB64, toB64, finish };
