// Notifications in the web widget, in headless Chromium.
//
//   node tests/browser/notify.mjs <base_url> <client_id> <event_key>
//
// Expects a server where a status event for the application 7654321 (filed
// by the web client <client_id>) was already sent while the page was closed.
// The page opens as that client: the notification is in the chat (the
// outbox's replay) and shown by the browser's Notification API (the
// permission granted to the page); the «Уведомления» button opens the
// settings; a second status event arrives while the page is open and is
// shown at once, in the chat and by the browser; its unsubscribe button
// unsubscribes. The page's Notification constructor is wrapped to record
// what was shown (the real one still runs).
import { chromium } from 'playwright-core';

const [baseArg, client, eventKey] = process.argv.slice(2);
if (!baseArg || !client || !eventKey) {
  console.error('usage: node tests/browser/notify.mjs <base_url> <client_id> <event_key>');
  process.exit(2);
}
const base = baseArg.replace(/\/+$/, '');
const FAILURE = '/tmp/otklik-notify-failure.png';
let browser = null;
let page = null;

function assert(cond, message) {
  if (!cond) throw new Error(message);
}

async function bots() {
  return page.$$eval('.otklik-msg', (ms) => ms.map((m) => m.textContent));
}

async function waitText(needle, timeout = 30000) {
  await page.waitForFunction(
    (n) => Array.from(document.querySelectorAll('.otklik-msg')).some((m) => m.textContent.includes(n)),
    needle,
    { timeout },
  );
}

async function shown() {
  return page.evaluate(() => window.__shown.slice());
}

async function run() {
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
  const context = await browser.newContext();
  await context.grantPermissions(['notifications'], { origin: base });
  await context.addInitScript((id) => {
    localStorage.setItem('otklik.client', id);
    window.__shown = [];
    const Real = window.Notification;
    if (Real) {
      const Spy = function (title, opts) {
        window.__shown.push({ title, body: opts && opts.body });
        return new Real(title, opts);
      };
      Object.defineProperty(Spy, 'permission', { get: () => Real.permission });
      Spy.requestPermission = (...a) => Real.requestPermission(...a);
      window.Notification = Spy;
    }
  }, client);
  page = await context.newPage();
  await page.goto(base + '/', { waitUntil: 'domcontentloaded' });
  // The demo page embeds the chat; a floating panel opens by its launcher.
  const launcher = page.locator('[data-testid="otklik-launcher"]');
  if (await launcher.isVisible().catch(() => false)) await launcher.click();

  // The notification sent while the page was closed: in the chat and shown by the browser.
  await waitText('7654321');
  const first = (await bots()).find((t) => t.includes('7654321'));
  assert(first.includes('одобрено'), `the status: ${first}`);
  assert(first.includes('Отписаться от уведомлений о статусе заявлений'), `the unsubscribe button: ${first}`);
  await page.waitForFunction(() => window.__shown.length === 1, null, { timeout: 10000 });
  const s1 = await shown();
  assert(s1[0].body.includes('7654321'), `the browser's notification: ${JSON.stringify(s1)}`);

  // The «Уведомления» button opens the settings.
  await page.click('[data-testid="otklik-notify"]');
  await waitText('Настройки уведомлений');
  const labels = await page.$$eval('[data-testid="otklik-choice"]', (bs) => bs.map((b) => b.textContent));
  assert(labels.includes('Выключить: статус заявлений'), `the settings' switches: ${labels}`);

  // A second event while the page is open: shown at once.
  const r = await fetch(base + '/api/v1/events/status', {
    method: 'POST',
    headers: { Authorization: 'Bearer ' + eventKey, 'Content-Type': 'application/json' },
    body: JSON.stringify({ event_id: 'browser-2', number: '7654321', status: 'выплачено' }),
  });
  assert(r.status === 200, `the event: ${r.status}`);
  await waitText('выплачено');
  await page.waitForFunction(() => window.__shown.length === 2, null, { timeout: 10000 });
  // A reload shows nothing twice.
  await page.reload();
  await waitText('выплачено');
  await page.waitForTimeout(1500);
  assert((await shown()).length === 0, 'after a reload no notification is shown again');

  // Its unsubscribe button.
  const unsub = page.locator('[data-choice-id="notify_unsub:status"]').last();
  await unsub.click();
  await waitText('больше не придут');
  await browser.close();
}

run().then(
  () => {
    console.log('ok    notifications in the widget');
  },
  async (e) => {
    console.error('FAIL  notifications in the widget');
    console.error(e && e.stack ? e.stack : String(e));
    if (page) await page.screenshot({ path: FAILURE, fullPage: true }).catch(() => {});
    if (browser) await browser.close().catch(() => {});
    process.exit(1);
  },
);
