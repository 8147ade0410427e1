// Runs the unmodified @pyroscope/nodejs client against an Embers server: a CPU-bound
// loop split 3:1 between two functions, wall profiling, pushed every 2 s.
// Usage: node pyroscope-node-push.mjs SERVER_URL APP_NAME SECONDS
import Pyroscope from '@pyroscope/nodejs';

const [server, appName, seconds] = process.argv.slice(2);

function busy(ms) {
  const end = Date.now() + ms;
  let x = 0;
  while (Date.now() < end) x += Math.sqrt(x + 1);
  return x;
}
function heavyWork() { return busy(30); }
function lightWork() { return busy(10); }

Pyroscope.init({
  serverAddress: server,
  appName,
  tags: { region: 'eu-north-1', flavour: 'node' },
  flushIntervalMs: 2000,
});
Pyroscope.start();
console.log('ready', process.pid);
const end = Date.now() + Number(seconds) * 1000;
while (Date.now() < end) {
  heavyWork();
  lightWork();
  await new Promise((r) => setImmediate(r));
}
await Pyroscope.stop();
console.log('stopped');
