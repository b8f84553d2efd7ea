// End-to-end test of the web widget and the operator console in headless Chromium.
//
//   node tests/browser/e2e.mjs <base_url> <operator_login> <operator_password> <second_operator_login> <microphone_wav> [artifacts_dir]
//
// Expects a freshly started server (an empty operator queue) whose operators are on
// duty, whose recogniser is loaded, with [http] voice_max_seconds shorter than
// microphone_wav: what Chromium's fake microphone plays (a second of silence, then
// «Хочу записаться на приём», then silence). Exit code 0 when every step passes;
// otherwise the failing step, the error and a screenshot in
// /tmp/otklik-e2e-failure.png. Screenshots of the widget on a desktop and on a
// phone, with both text sizes and while recording, are kept in artifacts_dir
// (default: target/browser-artifacts).
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { chromium } from 'playwright-core';

const [baseArg, opLogin, opPassword, op2Login, microphoneWav, artifactsArg] = process.argv.slice(2);
if (!baseArg || !opLogin || !opPassword || !op2Login || !microphoneWav) {
  console.error('usage: node tests/browser/e2e.mjs <base_url> <operator_login> <operator_password> <second_operator_login> <microphone_wav> [artifacts_dir]');
  process.exit(2);
}
const base = baseArg.replace(/\/+$/, '');
const SCREENSHOT = '/tmp/otklik-e2e-failure.png';
const ARTIFACTS = resolve(artifactsArg || 'target/browser-artifacts');
mkdirSync(ARTIFACTS, { recursive: true });
const REPLY_MS = 15000; // one bot reply on a 2-core machine
const FIRST_MS = 60000; // the first page load may wait for the model to load

const XSS = '<img src=x onerror="window.__xss=1">жирный <b>текст</b>';
const OPERATOR_HELLO = 'Здравствуйте! Я оператор, чем помочь?';
const OFFLINE_TEXT = 'спасибо, жду';

let browser = null;
let current = null; // the page a failure screenshot is taken of
const pageErrors = [];
let passed = 0;

async function step(name, fn) {
  const t0 = Date.now();
  try {
    await fn();
  } catch (e) {
    console.error(`FAIL  ${name}`);
    console.error(e && e.stack ? e.stack : String(e));
    if (pageErrors.length) console.error('JavaScript errors on the pages:\n  ' + pageErrors.join('\n  '));
    if (current) {
      try {
        await current.screenshot({ path: SCREENSHOT, fullPage: true });
        console.error(`screenshot: ${SCREENSHOT} (${current.url()})`);
      } catch (se) {
        console.error(`no screenshot: ${se.message}`);
      }
    }
    if (browser) await browser.close().catch(() => {});
    console.error(`${passed} passed, 1 failed`);
    process.exit(1);
  }
  passed++;
  console.log(`ok    ${name} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
}

function assert(cond, message) {
  if (!cond) throw new Error(message);
}

/** Saves a screenshot of the viewport as a test artefact and prints its path. */
async function keepScreenshot(page, name) {
  const path = join(ARTIFACTS, name);
  await page.screenshot({ path });
  console.log(`      screenshot: ${path}`);
}

function watch(page, label) {
  page.on('pageerror', (e) => pageErrors.push(`[${label}] ${e.message}`));
  page.on('dialog', (d) => {
    pageErrors.push(`[${label}] unexpected dialog: ${d.message()}`);
    d.dismiss().catch(() => {});
  });
}

// ------------------------------------------------------------------ widget helpers
const MSG = '[data-testid="otklik-log"] [data-testid="otklik-msg"]';

/** Messages rendered in the widget: [{seq, from, text, status}] */
function messages(page) {
  return page.$$eval(MSG, (els) =>
    els.map((e) => ({
      seq: e.dataset.seq ? Number(e.dataset.seq) : null,
      from: e.dataset.from,
      status: e.dataset.status || null,
      // The text may be split in paragraphs around the links.
      text: e.querySelector('.otklik-text')
        ? Array.from(e.querySelectorAll('.otklik-text'), (t) => t.textContent).join('\n\n')
        : e.textContent,
    }))
  );
}

async function maxSeq(page) {
  const ms = await messages(page);
  return ms.reduce((m, x) => (x.seq && x.seq > m ? x.seq : m), 0);
}

/** Waits for a message from `from` with seq > afterSeq whose text contains `needle`. */
async function waitMessage(page, { from, afterSeq = 0, needle = '', timeout = REPLY_MS }) {
  const handle = await page
    .waitForFunction(
      ({ sel, from, afterSeq, needle }) => {
        for (const e of document.querySelectorAll(sel)) {
          const seq = Number(e.dataset.seq || 0);
          if (e.dataset.from === from && seq > afterSeq && e.textContent.includes(needle)) return seq;
        }
        return false;
      },
      { sel: MSG, from, afterSeq, needle },
      { timeout, polling: 100 }
    )
    .catch((e) => {
      throw new Error(`no ${from} message${needle ? ` containing «${needle}»` : ''} after seq ${afterSeq} within ${timeout / 1000} s (${e.message.split('\n')[0]})`);
    });
  return handle.jsonValue();
}

function msgBySeq(page, seq) {
  return page.locator(`${MSG}[data-seq="${seq}"]`);
}

async function send(page, text) {
  const input = page.getByTestId('otklik-input');
  await input.fill(text);
  await input.press('Enter');
}

async function countClient(page, text) {
  const ms = await messages(page);
  return ms.filter((m) => m.from === 'client' && m.text === text).length;
}

// ------------------------------------------------------------------ run
// The server under another name, which the browser resolves to it: a page on plain
// http that is not this machine is no secure context, so it has no getUserMedia.
const INSECURE_HOST = 'otklik-insecure.test';
browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync',
    // A microphone that plays the WAV. The permission is the context's own
    // (`permissions: ['microphone']`), not --use-fake-ui-for-media-stream, which
    // would grant it everywhere: a context without it is refused, as a citizen who
    // says «Блокировать» is.
    '--use-fake-device-for-media-stream',
    `--use-file-for-fake-audio-capture=${resolve(microphoneWav)}`,
    `--host-resolver-rules=MAP ${INSECURE_HOST} 127.0.0.1`,
  ],
});

const citizenCtx = await browser.newContext({ locale: 'ru-RU', viewport: { width: 1280, height: 900 } });
const citizen = await citizenCtx.newPage();
citizen.setDefaultTimeout(REPLY_MS);
watch(citizen, 'citizen');
current = citizen;
// The last messages the server sent to the citizen's widget, to show in a failure.
const citizenFrames = [];
citizen.on('websocket', (ws) =>
  ws.on('framereceived', (f) => {
    if (typeof f.payload !== 'string' || !f.payload.includes('"msg"')) return;
    citizenFrames.push(f.payload);
    if (citizenFrames.length > 20) citizenFrames.shift();
  })
);

let session = null;
let seqsBeforeReload = [];

await step('1. citizen opens the demo page and gets the greeting', async () => {
  await citizen.goto(base + '/', { waitUntil: 'domcontentloaded' });
  await waitMessage(citizen, { from: 'bot', needle: 'Здравствуйте', timeout: FIRST_MS });
  const log = citizen.getByTestId('otklik-log');
  assert((await log.getAttribute('role')) === 'log', 'the message list has no role="log"');
  assert((await log.getAttribute('aria-live')) === 'polite', 'the message list has no aria-live="polite"');
  assert(await citizen.getByRole('textbox', { name: 'Ваше сообщение' }).isVisible(), 'no visible input labelled «Ваше сообщение»');
  assert(await citizen.getByRole('button', { name: 'Отправить' }).isVisible(), 'no «Отправить» button');
  const mic = citizen.getByTestId('otklik-mic');
  assert(await mic.isVisible(), 'no microphone button although the server takes voice messages');
  assert((await mic.getAttribute('aria-label')) === 'Записать голосовое сообщение', `the microphone button is labelled ${await mic.getAttribute('aria-label')}`);
  const id = await citizen.evaluate(() => window.Otklik && window.Otklik.clientId);
  assert(typeof id === 'string' && id.length >= 8, 'window.Otklik.clientId is missing');
  session = 'web:' + id;
});

let answerSeq = 0;
const SOLVED = 'Ваш вопрос решён?';
await step('2. a question about the allowance gets its answer with «Да» / «Нет», the links before «Ваш вопрос решён?»', async () => {
  const after = await maxSeq(citizen);
  await send(citizen, 'как оформить единое пособие на ребенка');
  answerSeq = await waitMessage(citizen, { from: 'bot', afterSeq: after, needle: 'Единое пособие' });
  // The question may come in the same message or right after it.
  const yes = citizen.locator(`${MSG}[data-from="bot"] [data-testid="otklik-choice"]:not([disabled])`, { hasText: /^\s*Да\s*$/ });
  const no = citizen.locator(`${MSG}[data-from="bot"] [data-testid="otklik-choice"]:not([disabled])`, { hasText: /^\s*Нет\s*$/ });
  await yes.first().waitFor({ timeout: REPLY_MS });
  await no.first().waitFor({ timeout: REPLY_MS });
  await waitMessage(citizen, { from: 'bot', afterSeq: after, needle: SOLVED });

  // The answer's links (Госуслуги, СФР) come right after the answer, before the
  // question «Ваш вопрос решён?» and before its buttons, in the order of the page.
  const order = await citizen.evaluate(
    ({ sel, after, solved }) => {
      const bots = Array.from(document.querySelectorAll(sel)).filter((e) => e.dataset.from === 'bot' && Number(e.dataset.seq || 0) > after);
      // The innermost element whose text contains the needle.
      const innermost = (needle) => {
        for (const m of bots) {
          for (const e of [m, ...m.querySelectorAll('*')]) {
            if (e.textContent.includes(needle) && !Array.from(e.children).some((c) => c.textContent.includes(needle))) return e;
          }
        }
        return null;
      };
      const precedes = (a, b) => !!(a.compareDocumentPosition(b) & Node.DOCUMENT_POSITION_FOLLOWING);
      const layout = bots.map((m) =>
        Array.from(m.children)
          .filter((c) => !c.classList.contains('otklik-sr'))
          .map((c) => `<${c.tagName.toLowerCase()} class="${c.className}">${c.textContent.replace(/\s+/g, ' ').slice(0, 50)}`)
          .join(' | ')
      );
      const link = bots.map((m) => m.querySelector('[data-testid="otklik-link"]')).find(Boolean);
      const list = link && link.closest('ul');
      const answer = innermost('Единое пособие');
      const question = innermost(solved);
      const choices = bots.flatMap((m) => Array.from(m.querySelectorAll('[data-testid="otklik-choice"]'))).filter((b) => /^\s*(Да|Нет)\s*$/.test(b.textContent));
      const hrefs = bots.flatMap((m) => Array.from(m.querySelectorAll('[data-testid="otklik-link"]'), (a) => a.href));
      const safe = bots.flatMap((m) => Array.from(m.querySelectorAll('[data-testid="otklik-link"]'))).every((a) => a.target === '_blank' && /noopener/.test(a.rel));
      return {
        layout,
        hrefs,
        safe,
        hasList: !!list,
        hasQuestion: !!question,
        choices: choices.length,
        answerBeforeLinks: !!(list && answer && precedes(answer, list)),
        linksBeforeQuestion: !!(list && question && precedes(list, question)),
        linksBeforeChoices: !!list && choices.length > 0 && choices.every((b) => precedes(list, b)),
      };
    },
    { sel: MSG, after, solved: SOLVED }
  );
  const shown = () => `the bot messages show: ${order.layout.join(' || ')}; the server sent: ${citizenFrames.filter((f) => f.includes('Единое пособие')).join(' ')}`;
  assert(order.hasList, `the answer has no links; ${shown()}`);
  assert(order.hrefs.some((h) => h.startsWith('https://www.gosuslugi.ru')), `no link to Госуслуги: ${order.hrefs.join(', ')}`);
  assert(order.safe, 'a link opens without target="_blank" rel="noopener"');
  assert(order.hasQuestion, `no element contains «${SOLVED}»; ${shown()}`);
  assert(order.choices >= 2, `no «Да» / «Нет» buttons; ${shown()}`);
  assert(order.answerBeforeLinks, `the links come before the answer; ${shown()}`);
  assert(order.linksBeforeQuestion, `the links come after «${SOLVED}»; ${shown()}`);
  assert(order.linksBeforeChoices, `the links come after the «Да» / «Нет» buttons; ${shown()}`);
  await keepScreenshot(citizen, 'desktop-answer-links.png');
});

await step('3. «Нет» asks to rephrase and offers topics; picking the first one answers', async () => {
  const after = await maxSeq(citizen);
  await citizen
    .locator(`${MSG}[data-from="bot"] [data-testid="otklik-choice"]:not([disabled])`, { hasText: /^\s*Нет\s*$/ })
    .last()
    .click();
  const seq = await waitMessage(citizen, { from: 'bot', afterSeq: after, needle: 'другими словами' });
  const options = msgBySeq(citizen, seq).getByTestId('otklik-choice');
  assert((await options.count()) >= 1, 'the rephrase message has no option buttons');
  // Older messages' buttons are disabled: only the latest bot message is active.
  const stale = await citizen.locator(`${MSG}[data-seq="${answerSeq}"] [data-testid="otklik-choice"]:not([disabled])`).count();
  assert(stale === 0, 'buttons of an older bot message are still enabled');
  const before = await maxSeq(citizen);
  const label = (await options.first().textContent()).trim();
  await options.first().click();
  await waitMessage(citizen, { from: 'client', afterSeq: before, needle: label });
  await waitMessage(citizen, { from: 'bot', afterSeq: before });
});

await step('4. HTML typed by the citizen is shown as text, never run', async () => {
  // Let the previous turn finish (a «Ваш вопрос решён?» may follow the answer).
  await citizen.waitForTimeout(500);
  const after = await maxSeq(citizen);
  await send(citizen, XSS);
  const seq = await waitMessage(citizen, { from: 'client', afterSeq: after, needle: '<img src=x' });
  const text = await msgBySeq(citizen, seq).textContent();
  assert(text.includes(XSS), `the client message does not show the typed text literally: ${JSON.stringify(text)}`);
  assert((await citizen.locator('[data-testid="otklik-log"] img, [data-testid="otklik-log"] b').count()) === 0, 'the log contains an <img> or <b> element');
  assert((await citizen.evaluate(() => typeof window.__xss)) === 'undefined', 'window.__xss was set: the HTML ran');
  await waitMessage(citizen, { from: 'bot', afterSeq: seq });
});

await step('4b. «Мой профиль» sends the words, and the bot shows the service search\'s profile', async () => {
  current = citizen;
  const after = await maxSeq(citizen);
  await citizen.getByTestId('otklik-profile').click();
  await waitMessage(citizen, { from: 'client', afterSeq: after, needle: 'мой профиль' });
  await waitMessage(citizen, { from: 'bot', afterSeq: after, needle: 'В Вашем профиле пока ничего нет' });
});

await step('5. «позовите оператора» hands the conversation to a person', async () => {
  await citizen.waitForTimeout(300);
  const after = await maxSeq(citizen);
  await send(citizen, 'позовите оператора');
  const echo = await waitMessage(citizen, { from: 'client', afterSeq: after, needle: 'позовите оператора' });
  await waitMessage(citizen, { from: 'bot', afterSeq: echo, needle: 'оператор' });
  await citizen.waitForTimeout(500); // nothing more should arrive; let it settle
  seqsBeforeReload = (await messages(citizen)).map((m) => m.seq);
  assert(seqsBeforeReload.every((s) => s !== null), 'some messages were never confirmed by the server');
});

await step('6. a reload shows the whole conversation once, without gaps or duplicates', async () => {
  await citizen.reload({ waitUntil: 'domcontentloaded' });
  const last = Math.max(...seqsBeforeReload);
  await citizen.waitForFunction(
    ({ sel, last }) => Array.from(document.querySelectorAll(sel)).some((e) => Number(e.dataset.seq) === last),
    { sel: MSG, last },
    { timeout: REPLY_MS }
  );
  await citizen.waitForTimeout(500);
  const ms = await messages(citizen);
  const seqs = ms.map((m) => m.seq);
  assert(new Set(seqs).size === seqs.length, `duplicate seq after reload: ${seqs.join(',')}`);
  const missing = seqsBeforeReload.filter((s) => !seqs.includes(s));
  assert(missing.length === 0, `messages missing after reload: seq ${missing.join(',')}`);
  const greetings = ms.filter((m) => m.from === 'bot' && m.text.includes('Здравствуйте')).length;
  assert(greetings === 1, `the greeting is shown ${greetings} times`);
  const xss = await countClient(citizen, XSS);
  assert(xss === 1, `the HTML text is shown ${xss} times`);
  assert((await citizen.locator('[data-testid="otklik-log"] img').count()) === 0, 'an <img> appeared after reload');
  assert((await citizen.evaluate(() => typeof window.__xss)) === 'undefined', 'window.__xss was set after reload');
});

const opCtx = await browser.newContext({ locale: 'ru-RU', viewport: { width: 1280, height: 1000 } });
const op = await opCtx.newPage();
op.setDefaultTimeout(REPLY_MS);
watch(op, 'operator');

async function historyCount(text) {
  return op.$$eval('[data-testid="history"] [data-testid="history-entry"]', (els, t) => els.filter((e) => (e.querySelector('.h-text') || e).textContent === t).length, text);
}

await step('7. the operator signs in, sees the conversation safely, takes it, replies and tags its topic', async () => {
  current = op;
  await op.goto(base + '/operator', { waitUntil: 'domcontentloaded' });
  await op.getByTestId('login').fill(opLogin);
  await op.getByTestId('password').fill(opPassword);
  await op.getByTestId('login-submit').click();
  await op.locator('#app-view:not([hidden]), [data-testid="error"]:not(:empty)').first().waitFor({ timeout: REPLY_MS });
  const loginError = (await op.getByTestId('error').textContent()).trim();
  assert(!loginError, `sign-in as ${opLogin} failed: ${loginError}`);
  const item = op.locator(`[data-testid="queue-item"][data-session="${session}"]`);
  await item.waitFor({ timeout: REPLY_MS }).catch(async (e) => {
    const rows = await op.getByTestId('queue-item').evaluateAll((els) => els.map((x) => x.dataset.session));
    throw new Error(`the conversation ${session} is not in the operator queue (it shows: ${rows.join(', ') || 'nothing'}): ${e.message.split('\n')[0]}`);
  });
  const all = await op.getByTestId('queue-item').count();
  assert(all === 1, `the queue shows ${all} items, expected 1 (is the server fresh?)`);
  await item.click();
  const history = op.getByTestId('history');
  await history.getByText(XSS, { exact: true }).waitFor({ timeout: REPLY_MS });
  assert((await op.locator('img').count()) === 0, 'the console contains an <img> element');
  assert((await op.evaluate(() => typeof window.__xss)) === 'undefined', 'window.__xss was set in the console');
  await op.getByTestId('take').click();
  await op.waitForFunction(() => {
    const t = document.querySelector('[data-testid="reply-text"]');
    return t && !t.disabled;
  });
  await op.getByTestId('reply-text').fill(OPERATOR_HELLO);
  const replied = op.waitForResponse((r) => r.url().includes('/reply') && r.request().method() === 'POST');
  await op.getByTestId('reply-send').click();
  const res = await replied;
  assert(res.status() === 200, `reply answered ${res.status()}: ${await res.text()}`);
  await history.getByText(OPERATOR_HELLO, { exact: true }).waitFor({ timeout: REPLY_MS });
  // The operator tags the conversation's topic: the trainers' best label.
  await op.getByTestId('tag-intent').selectOption('child_allowance');
  const tagged = op.waitForResponse((r) => r.url().endsWith('/tag') && r.request().method() === 'POST');
  await op.getByTestId('tag-send').click();
  const tag = await tagged;
  assert(tag.status() === 200, `tag answered ${tag.status()}: ${await tag.text()}`);
  await op.getByTestId('notice').getByText('Тема отмечена').waitFor({ timeout: REPLY_MS });
  await keepScreenshot(op, 'console-taken.png');
});

await step('8. the citizen sees the operator reply once', async () => {
  current = citizen;
  await waitMessage(citizen, { from: 'operator', needle: OPERATOR_HELLO });
  await citizen.waitForTimeout(300);
  const n = (await messages(citizen)).filter((m) => m.from === 'operator' && m.text === OPERATOR_HELLO).length;
  assert(n === 1, `the operator reply is shown ${n} times`);
});

await step('9. a message written during a connection drop arrives once after reconnect', async () => {
  const firstSocket = await citizen.evaluateHandle(() => window.Otklik.socket);
  const restored = citizen.waitForFunction(
    () => /Связь восстановлена/.test(document.querySelector('[data-testid="otklik-status"]').textContent),
    null,
    { timeout: REPLY_MS, polling: 50 }
  );
  restored.catch(() => {}); // awaited below; keeps an early failure from going unhandled
  await citizen.evaluate(() => window.Otklik.socket.close());
  await send(citizen, OFFLINE_TEXT);
  await waitMessage(citizen, { from: 'client', needle: OFFLINE_TEXT });
  await restored;
  const fresh = await citizen.evaluate((old) => window.Otklik.socket !== old && window.Otklik.socket.readyState === WebSocket.OPEN, firstSocket);
  assert(fresh, 'the widget did not open a new socket');
  current = op;
  await op.getByTestId('history').getByText(OFFLINE_TEXT, { exact: true }).first().waitFor({ timeout: REPLY_MS });
  await op.waitForTimeout(1000); // a duplicate would arrive within this time
  const inConsole = await historyCount(OFFLINE_TEXT);
  assert(inConsole === 1, `the console history shows «${OFFLINE_TEXT}» ${inConsole} times`);
  current = citizen;
  const inWidget = await countClient(citizen, OFFLINE_TEXT);
  assert(inWidget === 1, `the citizen log shows «${OFFLINE_TEXT}» ${inWidget} times`);
  const pending = await citizen.evaluate(() => JSON.parse(localStorage.getItem('otklik.pending') || '[]').length);
  assert(pending === 0, `${pending} messages still pending in localStorage`);
});

await step('10. transfer to the second operator; a wrong password and a request without a cookie are refused', async () => {
  current = op;
  await op.getByTestId('transfer-to').selectOption(op2Login);
  const transferred = op.waitForResponse((r) => r.url().includes('/transfer') && r.request().method() === 'POST');
  await op.getByTestId('transfer-send').click();
  const res = await transferred;
  assert(res.status() === 200, `transfer answered ${res.status()}: ${await res.text()}`);
  await op.locator('[data-testid="transfers"]', { hasText: 'Передач: 1 из 2' }).waitFor({ timeout: REPLY_MS });

  const strangerCtx = await browser.newContext({ locale: 'ru-RU' });
  const stranger = await strangerCtx.newPage();
  watch(stranger, 'stranger');
  current = stranger;
  await stranger.goto(base + '/operator', { waitUntil: 'domcontentloaded' });
  await stranger.getByTestId('login').fill(opLogin);
  await stranger.getByTestId('password').fill(opPassword + '-wrong');
  await stranger.getByTestId('login-submit').click();
  const alert = stranger.getByRole('alert').filter({ hasText: 'Неверный логин или пароль.' });
  await alert.waitFor({ timeout: REPLY_MS });

  const r = await fetch(base + '/api/v1/operator/queue');
  assert(r.status === 401, `GET /api/v1/operator/queue without a cookie answered ${r.status}`);
  const body = await r.json().catch(() => null);
  assert(body && body.error && body.error.code === 'unauthorized', `unexpected 401 body: ${JSON.stringify(body)}`);
  await strangerCtx.close();
});

/** The floating panel's box, the viewport and how wide the document is. */
async function panelGeometry(page) {
  const box = await page.getByTestId('otklik-panel').boundingBox();
  const send = await page.getByTestId('otklik-send').boundingBox();
  const mic = await page.getByTestId('otklik-mic').boundingBox();
  const input = await page.getByTestId('otklik-input').boundingBox();
  const view = await page.evaluate(() => ({
    width: window.innerWidth,
    height: window.innerHeight,
    scrollWidth: Math.max(document.documentElement.scrollWidth, document.body.scrollWidth),
    large: document.querySelector('[data-testid="otklik-root"]').classList.contains('otklik-large'),
  }));
  return { box, send, mic, input, view };
}

const near = (a, b) => Math.abs(a - b) < 0.5;

/**
 * The microphone button sits just before «Отправить», as tall as it and big enough to
 * tap, after the input (to its right, or below it on a narrow panel with large text),
 * and the input keeps a usable width.
 */
function assertMicBeside(g, what) {
  const { mic, input, send } = g;
  assert(mic && input && send, `${what}: the microphone button is not shown`);
  const where = JSON.stringify({ mic, input, send });
  assert(mic.x + mic.width <= send.x && send.x - (mic.x + mic.width) < 20, `${what}: the microphone button is not just before «Отправить»: ${where}`);
  assert(mic.x >= input.x + input.width || mic.y >= input.y + input.height, `${what}: the microphone button overlaps the input: ${where}`);
  assert(input.width >= 180, `${what}: the input is squeezed to ${input.width} px: ${where}`);
  assert(near(mic.y + mic.height, send.y + send.height) && near(mic.height, send.height), `${what}: the microphone button and «Отправить» differ in height or line: ${JSON.stringify({ mic, send })}`);
  assert(mic.width >= 44 && mic.height >= 44, `${what}: the microphone button is ${mic.width}×${mic.height} px, under 44×44`);
}

await step('11. on a desktop «Крупный текст» widens the panel; screenshots of both sizes', async () => {
  current = citizen;
  const large = citizen.getByTestId('otklik-large');
  if ((await large.getAttribute('aria-pressed')) === 'true') await large.click();
  const normal = await panelGeometry(citizen);
  assert(!normal.view.large, 'large text is still on');
  assert(near(normal.box.width, 400), `the desktop panel is ${normal.box.width} px wide, expected 400`);
  assert(near(normal.box.x + normal.box.width, 1280 - 20), `the desktop panel ends at x=${normal.box.x + normal.box.width}, expected 1260`);
  assertMicBeside(normal, 'desktop');
  await keepScreenshot(citizen, 'desktop-normal.png');
  await large.click();
  const big = await panelGeometry(citizen);
  assert(big.view.large && (await large.getAttribute('aria-pressed')) === 'true', '«Крупный текст» did not turn large text on');
  assert(near(big.box.width, 520), `the desktop panel with large text is ${big.box.width} px wide, expected 520`);
  assert(near(big.box.x + big.box.width, 1280 - 20), `the desktop panel with large text ends at x=${big.box.x + big.box.width}, expected 1260`);
  assertMicBeside(big, 'desktop, large text');
  await keepScreenshot(citizen, 'desktop-large.png');
  await large.click(); // back to normal text
});

await step('12. on a phone (390×844) the panel covers the screen with both text sizes', async () => {
  const W = 390;
  const H = 844;
  const phoneCtx = await browser.newContext({
    locale: 'ru-RU',
    viewport: { width: W, height: H },
    deviceScaleFactor: 2,
    isMobile: true,
    hasTouch: true,
  });
  const phone = await phoneCtx.newPage();
  phone.setDefaultTimeout(REPLY_MS);
  watch(phone, 'phone');
  current = phone;
  await phone.goto(base + '/', { waitUntil: 'domcontentloaded' });
  await waitMessage(phone, { from: 'bot', needle: 'Здравствуйте' });
  const rounds = [
    { large: false, question: 'как оформить единое пособие на ребенка', file: 'phone-normal.png' },
    { large: true, question: 'где получить свидетельство о рождении', file: 'phone-large.png' },
  ];
  for (const r of rounds) {
    const size = r.large ? 'large text' : 'normal text';
    if (r.large) {
      await phone.getByTestId('otklik-large').tap();
      assert((await phone.getByTestId('otklik-large').getAttribute('aria-pressed')) === 'true', '«Крупный текст» did not turn large text on');
    }
    const g = await panelGeometry(phone);
    assert(g.view.large === r.large, `${size}: the widget's large-text state is ${g.view.large}`);
    assert(g.view.width === W, `${size}: the layout viewport is ${g.view.width} px wide, expected ${W} (the page was zoomed out to fit something wider)`);
    assert(g.box, `${size}: the panel is not shown`);
    assert(near(g.box.x, 0) && near(g.box.width, W), `${size}: the panel starts at x=${g.box.x} and is ${g.box.width} px wide; expected x=0 and ${W} px`);
    assert(near(g.box.y, 0) && near(g.box.height, H), `${size}: the panel starts at y=${g.box.y} and is ${g.box.height} px high; expected y=0 and ${H} px`);
    assert(g.view.scrollWidth <= W, `${size}: the page scrolls sideways: scrollWidth ${g.view.scrollWidth} > ${W}`);
    assert(g.send && g.send.x >= 0 && g.send.x + g.send.width <= W && g.send.y + g.send.height <= H, `${size}: «Отправить» is off the screen: ${JSON.stringify(g.send)}`);
    assertMicBeside(g, size);
    const after = await maxSeq(phone);
    await phone.getByTestId('otklik-input').fill(r.question);
    await phone.getByTestId('otklik-send').tap();
    const echo = await waitMessage(phone, { from: 'client', afterSeq: after, needle: r.question });
    await waitMessage(phone, { from: 'bot', afterSeq: echo });
    await phone.waitForTimeout(500); // the question that may follow the answer
    const later = await panelGeometry(phone);
    assert(later.view.scrollWidth <= W, `${size}: after the reply the page scrolls sideways: scrollWidth ${later.view.scrollWidth} > ${W}`);
    assert(near(later.box.x, 0) && near(later.box.width, W), `${size}: after the reply the panel starts at x=${later.box.x} and is ${later.box.width} px wide`);
    await keepScreenshot(phone, r.file);
  }
  await phoneCtx.close();
  current = citizen;
});

// ------------------------------------------------------------------ the microphone button
const MIC_LABEL = 'Записать голосовое сообщение';
const STOP_LABEL = 'Остановить запись и отправить';
const VOICE_MS = 60000; // recognition and the answer on a busy 2-core machine

/** A fresh citizen's page with the microphone allowed, at its greeting. */
async function voicePage(contextOptions, label) {
  const ctx = await browser.newContext(Object.assign({ locale: 'ru-RU', permissions: ['microphone'] }, contextOptions));
  const page = await ctx.newPage();
  page.setDefaultTimeout(REPLY_MS);
  watch(page, label);
  current = page;
  await page.goto(base + '/', { waitUntil: 'domcontentloaded' });
  await waitMessage(page, { from: 'bot', needle: 'Здравствуйте' });
  return { ctx, page };
}

/** After a recording: the recognised words as the citizen's message, then the booking flow's answer. */
async function expectRecognised(page, after) {
  const echo = await waitMessage(page, { from: 'client', afterSeq: after, needle: 'записаться', timeout: VOICE_MS });
  const shown = await msgBySeq(page, echo).textContent();
  assert(/при[её]м/.test(shown), `the recognised words: ${shown}`);
  assert(shown.includes('Распознано из голосового сообщения'), `the echo does not say it came from the voice message: ${shown}`);
  assert((await page.locator(`${MSG}[data-voice="1"]`).count()) === 0, 'the «Распознаю…» placeholder stayed');
  await waitMessage(page, { from: 'bot', afterSeq: echo, needle: 'согласны' });
}

await step('13. on a desktop, from the keyboard: the microphone button records, the recognised words come back as the citizen’s message, and the bot answers', async () => {
  const { ctx, page } = await voicePage({ viewport: { width: 1280, height: 900 } }, 'voice');
  const mic = page.getByRole('button', { name: MIC_LABEL });
  await mic.waitFor();
  await mic.focus();
  await page.keyboard.press('Enter');
  const stop = page.getByRole('button', { name: STOP_LABEL });
  await stop.waitFor();
  const rec = page.getByTestId('otklik-rec');
  await rec.waitFor({ state: 'visible' });
  const says = await rec.textContent();
  assert(says.includes('Идёт запись') && says.includes('нажмите кнопку записи ещё раз') && says.includes('из 0:07'), `the recording indicator says: ${says}`);
  assert(await stop.evaluate((b) => b === document.activeElement), 'the focus left the microphone button');
  await page.waitForTimeout(5000); // the citizen speaks: the fake microphone's second of silence, then the phrase
  await keepScreenshot(page, 'desktop-voice-recording.png');
  const after = await maxSeq(page);
  await page.keyboard.press('Space');
  await rec.waitFor({ state: 'hidden' });
  await page.getByRole('button', { name: MIC_LABEL }).waitFor();
  await expectRecognised(page, after);
  await keepScreenshot(page, 'desktop-voice-answer.png');
  await ctx.close();
});

await step('14. on a phone with large text the recording stops by itself at the limit and is answered', async () => {
  const W = 390;
  const H = 844;
  const { ctx, page } = await voicePage({ viewport: { width: W, height: H }, deviceScaleFactor: 2, isMobile: true, hasTouch: true }, 'phone-voice');
  await page.getByTestId('otklik-large').tap();
  const mic = page.getByTestId('otklik-mic');
  const after = await maxSeq(page);
  await mic.tap();
  const rec = page.getByTestId('otklik-rec');
  await rec.waitFor({ state: 'visible' });
  await page.waitForTimeout(1500);
  const g = await panelGeometry(page);
  assert(g.view.large, 'large text is off');
  assert(g.view.scrollWidth <= W, `while recording the page scrolls sideways: scrollWidth ${g.view.scrollWidth} > ${W}`);
  const recBox = await rec.boundingBox();
  assert(recBox && recBox.x >= 0 && recBox.x + recBox.width <= W, `the recording indicator is off the screen: ${JSON.stringify(recBox)}`);
  assertMicBeside(g, 'phone, large text, recording');
  assert((await mic.getAttribute('aria-label')) === STOP_LABEL, 'the button does not say it stops the recording');
  await keepScreenshot(page, 'phone-large-voice-recording.png');
  // No second tap: the server's limit for this test is 7 seconds.
  await rec.waitFor({ state: 'hidden', timeout: 20000 });
  await expectRecognised(page, after);
  await page.waitForTimeout(300);
  await keepScreenshot(page, 'phone-large-voice-answer.png');
  await ctx.close();
});

await step('15. a citizen who refused the microphone is told so in words', async () => {
  current = citizen; // its context was never given the microphone
  await citizen.getByRole('button', { name: MIC_LABEL }).click();
  await citizen.getByRole('alert').filter({ hasText: 'Нет доступа к микрофону' }).waitFor();
  assert(await citizen.getByTestId('otklik-rec').isHidden(), 'the recording indicator is shown without a microphone');
  assert((await citizen.getByTestId('otklik-mic').getAttribute('aria-label')) === MIC_LABEL, 'the button still says it stops a recording');
  await keepScreenshot(citizen, 'desktop-voice-refused.png');
});

await step('16. a page without getUserMedia (plain http, not this machine) has no microphone button, and typing works', async () => {
  const ctx = await browser.newContext({ locale: 'ru-RU', viewport: { width: 1280, height: 900 }, permissions: ['microphone'] });
  const page = await ctx.newPage();
  page.setDefaultTimeout(REPLY_MS);
  watch(page, 'insecure');
  current = page;
  const url = new URL(base);
  url.hostname = INSECURE_HOST;
  await page.goto(url.href, { waitUntil: 'domcontentloaded' });
  await waitMessage(page, { from: 'bot', needle: 'Здравствуйте' });
  const media = await page.evaluate(() => ({ secure: window.isSecureContext, gum: !!(navigator.mediaDevices && navigator.mediaDevices.getUserMedia) }));
  assert(!media.secure && !media.gum, `the page is expected without getUserMedia: ${JSON.stringify(media)}`);
  assert(await page.getByTestId('otklik-mic').isHidden(), 'the microphone button is shown where the browser cannot record');
  const after = await maxSeq(page);
  await send(page, 'пенсия');
  await waitMessage(page, { from: 'client', afterSeq: after, needle: 'пенсия' });
  await ctx.close();
  current = citizen;
});

await step('no JavaScript errors on the pages', async () => {
  assert(pageErrors.length === 0, 'JavaScript errors:\n  ' + pageErrors.join('\n  '));
});

await browser.close();
console.log(`${passed} passed, 0 failed`);
