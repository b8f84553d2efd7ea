// The analysts' dashboard in headless Chromium.
//
//   node tests/browser/analytics.mjs <base_url> <analyst_login> <operator_login> <password> [artifacts_dir]
//
// Expects a server whose log holds the conversations tests/browser.rs seeds
// and drives (four conversations over five days). Signs in as the analyst,
// checks the indicators, their stars, the chart and the breakdown by topic,
// then as an operator without the analyst's role, who is refused. Screenshots
// go to artifacts_dir (default: target/browser-artifacts); on a failure, to
// /tmp/otklik-analytics-failure.png.
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { chromium } from 'playwright-core';

const [baseArg, analyst, operator, password, artifactsArg] = process.argv.slice(2);
if (!baseArg || !analyst || !operator || !password) {
  console.error('usage: node tests/browser/analytics.mjs <base_url> <analyst_login> <operator_login> <password> [artifacts_dir]');
  process.exit(2);
}
const base = baseArg.replace(/\/+$/, '');
const FAILURE = '/tmp/otklik-analytics-failure.png';
const ARTIFACTS = resolve(artifactsArg || 'target/browser-artifacts');
mkdirSync(ARTIFACTS, { recursive: true });

let browser = null;
let page = null;
const pageErrors = [];
const blocked = [];
let passed = 0;

async function step(name, fn) {
  const t0 = Date.now();
  try {
    await fn();
  } catch (e) {
    console.error(`FAIL  ${name}`);
    console.error(e && e.stack ? e.stack : String(e));
    if (pageErrors.length) console.error('JavaScript errors on the page:\n  ' + pageErrors.join('\n  '));
    if (page) await page.screenshot({ path: FAILURE, fullPage: true }).catch(() => {});
    console.error(`screenshot: ${FAILURE}`);
    if (browser) await browser.close().catch(() => {});
    process.exit(1);
  }
  passed++;
  console.log(`ok    ${name} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
}

function assert(cond, message) {
  if (!cond) throw new Error(message);
}

async function card(key) {
  const li = page.locator(`#cards li[data-indicator="${key}"]`);
  return {
    value: (await li.locator('.c-value').textContent()).trim(),
    stars: await li.locator('.c-stars').getAttribute('data-stars').catch(() => null),
  };
}

async function signIn(login) {
  await page.goto(base + '/analytics');
  await page.getByTestId('login').fill(login);
  await page.getByTestId('password').fill(password);
  await page.getByTestId('login-submit').click();
}

browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: 'ru-RU' });
page = await ctx.newPage();
page.on('pageerror', (e) => pageErrors.push(e.message));
page.on('console', (m) => {
  if (m.type() === 'error' && /Content Security Policy/.test(m.text())) blocked.push(m.text());
});

await step('the analyst signs in and sees the indicators of the last 30 days', async () => {
  await signIn(analyst);
  await page.locator('#cards li').first().waitFor({ timeout: 15000 });
  const summary = await page.getByTestId('summary').textContent();
  assert(/: 4 разговора\./.test(summary), `summary: ${summary}`);
  const want = {
    resolution: ['75,0 %', '3'],
    ease: ['2,33', '3'],
    easy_share: ['66,7 %', '3'],
    satisfaction: ['3,67', '3'],
    nps: ['0', '3'],
    handoff: ['25,0 %', '3'],
    fallback: ['25,0 %', '2'],
    transfer: ['0,0 %', '5'],
    repeat: ['0,0 %', '5'],
  };
  for (const [key, [value, stars]] of Object.entries(want)) {
    const c = await card(key);
    assert(c.value === value, `${key}: ${c.value}, expected ${value}`);
    assert(c.stars === stars, `${key}: ${c.stars} stars, expected ${stars}`);
  }
});

await step('the chart draws the share of «решён» day by day', async () => {
  const dots = page.locator('#chart svg circle');
  assert((await dots.count()) === 4, `${await dots.count()} points`);
  const values = await dots.evaluateAll((cs) => cs.map((c) => Number(c.getAttribute('data-value'))));
  assert(JSON.stringify(values) === '[0,1,1,1]', `values ${values}`);
  assert((await page.locator('#chart svg polyline').count()) === 1, 'a line');
  const path = join(ARTIFACTS, 'analytics-dashboard.png');
  await page.screenshot({ path, fullPage: true });
  console.log(`      screenshot: ${path}`);
});

await step('another indicator on the chart: satisfaction', async () => {
  await page.getByTestId('chart-of').selectOption('satisfaction');
  const values = await page
    .locator('#chart svg circle')
    .evaluateAll((cs) => cs.map((c) => Number(c.getAttribute('data-value'))));
  assert(JSON.stringify(values) === '[4,2,5]', `values ${values}`);
});

await step('the breakdown by topic and the worst topics', async () => {
  await page.getByTestId('by').selectOption('intent');
  await page.getByTestId('show').click();
  await page.locator('#groups tbody tr').first().waitFor({ timeout: 15000 });
  const pension = page.locator('#groups tr[data-key="pension_application"]');
  const row = await pension.textContent();
  assert(row.includes('Пенсия по старости') && row.includes('66,7 %'), `row: ${row}`);
  const child = await page.locator('#groups tr[data-key="child_allowance"]').textContent();
  assert(child.includes('Единое пособие на детей') && child.includes('100,0 %'), `row: ${child}`);
  for (const id of ['worst-fallbacks', 'worst-unsolved', 'worst-handoffs']) {
    const t = await page.getByTestId(id).textContent();
    assert(t.includes('Пенсия по старости: 1 раз'), `${id}: ${t}`);
  }
  await page.locator('#groups-box').scrollIntoViewIfNeeded();
  const path = join(ARTIFACTS, 'analytics-by-topic.png');
  await page.screenshot({ path, fullPage: true });
  console.log(`      screenshot: ${path}`);
});

await step('a phone-sized screen', async () => {
  await page.setViewportSize({ width: 390, height: 844 });
  await page.getByTestId('by').selectOption('');
  await page.getByTestId('chart-of').selectOption('resolution');
  await page.getByTestId('show').click();
  await page.waitForFunction(() => document.getElementById('groups-box').hidden);
  const width = await page.locator('#chart svg').evaluate((s) => s.viewBox.baseVal.width);
  assert(width < 390, `the chart is drawn ${width} px wide for the phone`);
  const wide = await page.evaluate(() => document.documentElement.scrollWidth);
  assert(wide <= 390, `the page is ${wide} px wide`);
  const path = join(ARTIFACTS, 'analytics-phone.png');
  await page.screenshot({ path, fullPage: true });
  console.log(`      screenshot: ${path}`);
  await page.setViewportSize({ width: 1280, height: 900 });
});

await step('an operator without the analyst role is refused', async () => {
  await page.getByTestId('logout').click();
  await page.getByTestId('login').waitFor();
  await signIn(operator);
  const err = page.getByTestId('error');
  await page.waitForFunction(() => document.getElementById('error').textContent.length > 0, null, { timeout: 15000 });
  const t = await err.textContent();
  assert(t.includes('Показатели видят только аналитики'), `error: ${t}`);
  assert((await page.locator('#cards li').count()) === 0, 'no indicators shown');
  const path = join(ARTIFACTS, 'analytics-refused.png');
  await page.screenshot({ path });
  console.log(`      screenshot: ${path}`);
});

await step('no script errors and nothing blocked by the CSP', async () => {
  assert(pageErrors.length === 0, pageErrors.join('\n'));
  assert(blocked.length === 0, blocked.join('\n'));
});

await browser.close();
console.log(`${passed} passed`);
