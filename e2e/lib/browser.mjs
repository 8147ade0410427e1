// Launches Debian's Chromium through playwright-core with the flags this closed network
// needs (no background networking, no sync, no component updates), in a fresh profile.
import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.EMBERS_CHROMIUM || '/usr/bin/chromium';

export async function launch() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}
