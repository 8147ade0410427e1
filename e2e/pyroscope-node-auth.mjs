// Runs the unmodified @pyroscope/nodejs client with its auth options against an Embers
// server: `basicAuthUser`/`basicAuthPassword` (MODE basic) or `authToken` (MODE bearer),
// and `tenantID` when given. Run with DEBUG=pyroscope so the client logs a refusal.
// Usage: node pyroscope-node-auth.mjs SERVER_URL APP SECONDS MODE TOKEN [TENANT]
import Pyroscope from '@pyroscope/nodejs';

const [server, appName, seconds, mode, token, tenant] = process.argv.slice(2);

function busy(ms) {
  const end = Date.now() + ms;
  let x = 0;
  while (Date.now() < end) x += Math.sqrt(x + 1);
  return x;
}

const auth = mode === 'basic'
  ? { basicAuthUser: 'node', basicAuthPassword: token }
  : { authToken: token };
Pyroscope.init({
  serverAddress: server,
  appName,
  flushIntervalMs: 1000,
  ...auth,
  ...(tenant ? { tenantID: tenant } : {}),
});
Pyroscope.start();
console.log('ready', process.pid);
const end = Date.now() + Number(seconds) * 1000;
while (Date.now() < end) {
  busy(20);
  await new Promise((r) => setImmediate(r));
}
await Pyroscope.stop();
console.log('stopped');
