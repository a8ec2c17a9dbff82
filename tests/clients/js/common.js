// Shared by the kafkajs scripts: argument parsing, a quiet client, base64 helpers.
const { Kafka, logLevel, CompressionTypes, CompressionCodecs } = require('kafkajs');
const SnappyCodec = require('kafkajs-snappy');

CompressionCodecs[CompressionTypes.Snappy] = SnappyCodec;

// Arguments arrive as JSON on stdin (they can be megabytes: too big for argv).
function args() {
  return JSON.parse(require('fs').readFileSync(0, 'utf8') || '{}');
}

// `security` (optional): {ca, cert, key} PEM paths for TLS, {mechanism, username, password}
// for SASL, as the test's arguments carry them.
function client(brokers, security = {}) {
  const fs = require('fs');
  const config = {
    clientId: 'silt-tests',
    brokers,
    logLevel: logLevel.WARN,
    retry: { retries: security.retries === undefined ? 8 : security.retries, initialRetryTime: 100 },
  };
  if (security.ssl) {
    config.ssl = { ca: [fs.readFileSync(security.ssl.ca, 'utf8')] };
    if (security.ssl.cert) {
      config.ssl.cert = fs.readFileSync(security.ssl.cert, 'utf8');
      config.ssl.key = fs.readFileSync(security.ssl.key, 'utf8');
    }
  }
  if (security.sasl) config.sasl = security.sasl;
  return new Kafka(config);
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
