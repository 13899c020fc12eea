// Drives the stateright Explorer of `deltasnap-models explore` in headless Chromium: picks the
// actions named on the command line (by prefix) and then, by default, the first action that is not a
// writer's, until the model offers none; prints every step's choices and saves a screenshot.
//
//   apt-get install chromium && npm install --prefix /tmp/pw playwright-core
//   cargo run --release -p deltasnap-models -- explore snapshot --port 3000 &
//   NODE_PATH=/tmp/pw/node_modules node models/scripts/explorer_walk.js Init Write Write Write   # -> /tmp/explorer-steps.png
//
// EXPLORER_URL and SCREENSHOT override the address and the screenshot path.
const { chromium } = require('playwright-core');
(async () => {
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox','--disable-gpu','--disable-quic','--no-first-run','--disable-background-networking','--disable-component-update','--disable-sync'] });
  const page = await browser.newPage({ viewport: { width: 1400, height: 1400 } });
  await page.goto(process.env.EXPLORER_URL || 'http://127.0.0.1:3000/');
  const prefer = process.argv.slice(2);
  for (let i = 0; i < 40; i++) {
    const choices = page.locator('text=Next Action Choices').locator('xpath=following-sibling::ul[1]/li');
    if (await choices.count() === 0) { console.log('no more choices at step', i); break; }
    const texts = (await choices.allInnerTexts()).map(t => t.trim());
    let pick = 0;
    const want = prefer[i];
    if (want) { const k = texts.findIndex(t => t.startsWith(want)); if (k >= 0) pick = k; }
    else { const k = texts.findIndex(t => !t.startsWith('Write') && !t.startsWith('Allocate')); if (k >= 0) pick = k; }
    console.log(`step ${i}: [${texts.join(' | ')}] -> ${texts[pick]}`);
    await choices.nth(pick).locator("*").first().click().catch(() => choices.nth(pick).click());
    await page.waitForTimeout(250);
  }
  await page.screenshot({ path: process.env.SCREENSHOT || '/tmp/explorer-steps.png', fullPage: true });
  await browser.close();
})();
