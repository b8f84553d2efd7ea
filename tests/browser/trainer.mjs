// The trainers' review page in headless Chromium.
//
//   node tests/browser/trainer.mjs <base_url> <login> <password> [artifacts_dir]
//
// Expects a server whose log holds conversations in which citizens showed
// what a slang word means (the trainer test drives them). The trainer signs
// in, finds proposals in the log, rejects the proposed new topic, edits and
// accepts the examples, applies them and reads the held-out gain. Exit code
// 0 when every step passes; otherwise the failing step and a screenshot in
// /tmp/otklik-trainer-failure.png. Screenshots are kept in artifacts_dir.
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { chromium } from 'playwright-core';

const [baseArg, login, password, artifactsArg] = process.argv.slice(2);
if (!baseArg || !login || !password) {
  console.error('usage: node tests/browser/trainer.mjs <base_url> <login> <password> [artifacts_dir]');
  process.exit(2);
}
const base = baseArg.replace(/\/+$/, '');
const ARTIFACTS = resolve(artifactsArg || 'target/browser-artifacts');
mkdirSync(ARTIFACTS, { recursive: true });
const SCREENSHOT = '/tmp/otklik-trainer-failure.png';
const pageErrors = [];
let passed = 0;
let page = null;
let browser = null;

async function step(name, fn) {
  const t0 = Date.now();
  try {
    await fn();
  } catch (e) {
    console.error(`FAIL  ${name}\n${e && e.stack ? e.stack : e}`);
    if (pageErrors.length) console.error('JavaScript errors:\n  ' + pageErrors.join('\n  '));
    if (page) await page.screenshot({ path: SCREENSHOT, fullPage: true }).catch(() => {});
    if (browser) await browser.close().catch(() => {});
    process.exit(1);
  }
  passed++;
  console.log(`ok    ${name} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
}

function assert(cond, message) {
  if (!cond) throw new Error(message);
}

async function keep(name) {
  const path = join(ARTIFACTS, name);
  await page.screenshot({ path, fullPage: true });
  console.log(`      screenshot: ${path}`);
}

browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const ctx = await browser.newContext({ locale: 'ru-RU', viewport: { width: 1280, height: 900 } });
page = await ctx.newPage();
page.setDefaultTimeout(20000);
page.on('pageerror', (e) => pageErrors.push(e.message));

await step('1. the page asks for a sign-in; a wrong password is refused in Russian', async () => {
  await page.goto(`${base}/trainer`);
  await page.getByTestId('login').fill(login);
  await page.getByTestId('password').fill('wrong-password');
  await page.getByTestId('login-submit').click();
  await page.waitForFunction(() => document.querySelector('[data-testid="error"]').textContent.length > 0);
  const err = await page.getByTestId('error').textContent();
  assert(/[а-яё]/i.test(err), `a Russian error: ${err}`);
});

await step('2. the trainer signs in and finds proposals in the log', async () => {
  await page.getByTestId('password').fill(password);
  await page.getByTestId('login-submit').click();
  await page.getByTestId('suggest').click();
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="proposal"]').length >= 3, null, { timeout: 60000 });
  const kinds = await page.$$eval('[data-testid="proposal"]', (els) => els.map((e) => e.dataset.kind));
  assert(kinds.includes('example') && kinds.includes('intent'), `examples and a new topic: ${kinds}`);
  await keep('trainer-proposals.png');
});

await step('3. the new topic is rejected, the examples accepted (one edited)', async () => {
  const topic = page.locator('[data-testid="proposal"][data-kind="intent"]').first();
  await topic.getByTestId('reject').click();
  await page.waitForFunction(() => document.querySelector('[data-testid="proposal"][data-kind="intent"]').classList.contains('reject'));
  const n = await page.locator('[data-testid="proposal"][data-kind="example"]').count();
  for (let i = 0; i < n; i++) {
    const card = page.locator('[data-testid="proposal"][data-kind="example"]').nth(i);
    if (i === 0) {
      const texts = card.getByTestId('proposal-texts');
      await texts.fill((await texts.inputValue()) + '\nкак оформить епку на ребенка');
    }
    await card.getByTestId('accept').click();
    await page.waitForFunction((i) => document.querySelectorAll('[data-testid="proposal"][data-kind="example"]')[i].classList.contains('accept'), i);
  }
  const count = await page.getByTestId('count').textContent();
  assert(count.includes(`принято: ${n}`), count);
});

await step('4. applying shows the held-out gain and clears the list', async () => {
  await page.getByTestId('apply').click();
  // Applying retrains the encoder's top layers (one short epoch in the test).
  await page.getByTestId('gain').waitFor({ timeout: 600000 });
  const result = await page.getByTestId('result').textContent();
  assert(/Модель дообучена на \d+ примерах/.test(result), result);
  const rows = await page.$$eval('[data-testid="gain"] tr', (trs) => trs.map((tr) => Array.from(tr.children, (c) => c.textContent)));
  const top1 = rows.find((r) => r[0].startsWith('Точность (первая'));
  const [before, after] = [parseFloat(top1[1]), parseFloat(top1[2])];
  assert(after > before, `top-1 ${before} → ${after}`);
  const left = await page.locator('[data-testid="proposal"]').count();
  assert(left === 0, `applied and rejected proposals leave the list: ${left}`);
  assert(pageErrors.length === 0, pageErrors.join('; '));
  await keep('trainer-applied.png');
});

await browser.close();
console.log(`${passed} passed`);
