/*
 * Otklik chat widget: one <script> tag embeds a citizen chat with the ministry's bot.
 *
 *   <script src="https://example.gov.ru/widget.js"
 *           data-config='{"title":"Цифровой помощник","open":true}'></script>
 *
 * Config (window.OtklikConfig, else the data-config JSON of this script tag):
 *   server    base URL of the Otklik server (default: the origin widget.js came from)
 *   title     panel title
 *   segment   universal | senior | family | disability | jobseeker (optional)
 *   largeText start in large-text mode
 *   open      open the floating panel at once
 *   container CSS selector to mount into (default: floating panel + launcher button)
 *
 * Plain ES2020, no dependencies. Every piece of conversation text is rendered with
 * textContent, never as HTML. The microphone button records in the page and sends
 * the audio to the Otklik server, whose recogniser turns it into text: no other
 * speech service hears the citizen.
 */
(function () {
  'use strict';

  if (window.Otklik && window.Otklik.__widget) return; // loaded twice: keep the first

  const script = document.currentScript;

  // ---------------------------------------------------------------- config
  function readConfig() {
    if (window.OtklikConfig && typeof window.OtklikConfig === 'object') {
      return Object.assign({}, window.OtklikConfig);
    }
    const raw = script && script.getAttribute('data-config');
    if (raw) {
      try {
        const parsed = JSON.parse(raw);
        if (parsed && typeof parsed === 'object') return parsed;
      } catch (e) {
        console.warn('Otklik: data-config is not valid JSON', e);
      }
    }
    return {};
  }

  const config = readConfig();
  const SEGMENTS = ['universal', 'senior', 'family', 'disability', 'jobseeker'];
  const title = typeof config.title === 'string' && config.title.trim() ? config.title.trim() : 'Цифровой помощник';
  const segment = SEGMENTS.includes(config.segment) ? config.segment : null;

  function serverBase() {
    let base = typeof config.server === 'string' && config.server ? config.server : '';
    if (!base) {
      try {
        base = script && script.src ? new URL(script.src, location.href).origin : location.origin;
      } catch (e) {
        base = location.origin;
      }
    }
    try {
      const u = new URL(base, location.href);
      return u.origin + u.pathname.replace(/\/+$/, '');
    } catch (e) {
      return location.origin;
    }
  }
  const SERVER = serverBase();
  const WS_BASE = SERVER.replace(/^http(s?):/i, (m, s) => 'ws' + s + ':');

  // ---------------------------------------------------------------- storage
  const KEY_CLIENT = 'otklik.client';
  const KEY_LAST = 'otklik.lastSeq';
  const KEY_PENDING = 'otklik.pending';
  const KEY_LARGE = 'otklik.largeText';
  // Notifications (issue 16): the last notification shown by the browser.
  const KEY_NOTIFIED = 'otklik.notifiedSeq';
  const memoryStore = {};
  const store = {
    get(k) {
      try {
        return window.localStorage.getItem(k);
      } catch (e) {
        return Object.prototype.hasOwnProperty.call(memoryStore, k) ? memoryStore[k] : null;
      }
    },
    set(k, v) {
      try {
        window.localStorage.setItem(k, v);
      } catch (e) {
        memoryStore[k] = String(v);
      }
    },
  };

  function uuid() {
    if (window.crypto && typeof window.crypto.randomUUID === 'function') return window.crypto.randomUUID();
    // Non-secure contexts (plain http, not localhost) have no randomUUID.
    const b = new Uint8Array(16);
    window.crypto.getRandomValues(b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  // The server issues the identity in its welcome; the widget keeps it and
  // names it in the next hello (never in the URL, where proxies log it).
  let clientId = store.get(KEY_CLIENT);
  if (clientId && !/^[0-9a-f]{32}$/.test(clientId)) clientId = null;

  function loadPending() {
    try {
      const v = JSON.parse(store.get(KEY_PENDING) || '[]');
      return Array.isArray(v) ? v.filter((m) => m && typeof m.id === 'string' && typeof m.type === 'string') : [];
    } catch (e) {
      return [];
    }
  }
  function savePending(list) {
    store.set(KEY_PENDING, JSON.stringify(list));
  }
  function addPending(m) {
    const list = loadPending();
    if (!list.some((x) => x.id === m.id)) list.push(m);
    savePending(list);
  }
  function removePending(id) {
    const list = loadPending();
    const next = list.filter((x) => x.id !== id);
    if (next.length !== list.length) savePending(next);
  }
  function storedLastSeq() {
    const n = parseInt(store.get(KEY_LAST) || '0', 10);
    return Number.isFinite(n) && n > 0 ? n : 0;
  }

  // ---------------------------------------------------------------- styles
  const CSS = `
.otklik-root{--ok-accent:#1d4ed8;--ok-accent-dark:#1e3a8a;--ok-text:#1a1a1a;--ok-muted:#4b5563;--ok-bg:#ffffff;--ok-bot:#eef1f6;--ok-line:#c7ccd6;--ok-focus:#b45309;
  font-family:system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;font-size:16px;line-height:1.45;color:var(--ok-text);box-sizing:border-box;text-align:left}
.otklik-root *,.otklik-root *::before,.otklik-root *::after{box-sizing:border-box}
.otklik-root.otklik-large{font-size:22px}
.otklik-launcher{position:fixed;right:20px;bottom:20px;z-index:2147483000;font:600 17px/1.2 system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;
  color:#fff;background:var(--ok-accent,#1d4ed8);border:2px solid #fff;border-radius:999px;padding:14px 22px;cursor:pointer;box-shadow:0 4px 14px rgba(0,0,0,.3)}
.otklik-launcher:hover{background:#1e3a8a}
.otklik-launcher:focus-visible{outline:3px solid #b45309;outline-offset:3px}
.otklik-launcher[aria-expanded="true"]{display:none}
.otklik-launcher .otklik-badge{display:inline-block;width:10px;height:10px;border-radius:50%;background:#fbbf24;margin-left:8px;vertical-align:middle}
.otklik-root.otklik-floating{position:fixed;right:20px;bottom:20px;z-index:2147483001;width:min(400px,calc(100vw - 24px));height:min(640px,calc(100vh - 40px));
  box-shadow:0 8px 30px rgba(0,0,0,.3);border-radius:12px}
.otklik-root.otklik-floating.otklik-large{width:min(520px,calc(100vw - 24px))}
/* A phone: the panel covers the whole screen with either text size. The selectors
   match .otklik-large too, so the wider large-text rule above applies on a desktop only. */
@media (max-width:480px){.otklik-root.otklik-floating,.otklik-root.otklik-floating.otklik-large{top:0;right:0;bottom:0;left:0;width:auto;height:auto;border-radius:0;box-shadow:none}}
.otklik-root.otklik-embedded{width:100%;height:100%;min-height:420px}
.otklik-panel{container-type:inline-size;display:flex;flex-direction:column;height:100%;background:var(--ok-bg);border:1px solid var(--ok-line);border-radius:inherit;overflow:hidden}
.otklik-panel[hidden]{display:none}
.otklik-head{display:flex;align-items:center;gap:8px;padding:10px 14px;background:var(--ok-accent-dark);color:#fff}
.otklik-title{flex:1;margin:0;font-size:1.1em;font-weight:700;line-height:1.25;color:#fff}
.otklik-root button{font:inherit;cursor:pointer}
.otklik-close{background:transparent;color:#fff;border:2px solid rgba(255,255,255,.7);border-radius:6px;padding:2px 10px;font-size:.9em}
.otklik-close:hover{background:rgba(255,255,255,.15)}
.otklik-log{flex:1;overflow-y:auto;padding:12px;display:flex;flex-direction:column;gap:10px;background:#fafbfc;margin:0;list-style:none}
.otklik-msg{max-width:88%;padding:8px 12px;border-radius:12px;background:var(--ok-bot);color:var(--ok-text);border:1px solid #dde2ea;align-self:flex-start;word-wrap:break-word;overflow-wrap:anywhere}
.otklik-msg[data-from="client"]{align-self:flex-end;background:var(--ok-accent);color:#fff;border-color:var(--ok-accent)}
.otklik-msg[data-from="operator"]{background:#e7f5ec;border-color:#9fd3b0}
.otklik-who{display:block;font-size:.8em;font-weight:700;color:var(--ok-muted);margin-bottom:2px}
.otklik-msg[data-from="client"] .otklik-who{color:#e5ecff}
.otklik-sr{position:absolute!important;width:1px!important;height:1px!important;padding:0!important;margin:-1px!important;overflow:hidden!important;clip:rect(0,0,0,0)!important;white-space:nowrap!important;border:0!important}
.otklik-text{white-space:pre-wrap;margin:0}
.otklik-meta{display:block;font-size:.75em;margin-top:2px;text-align:right;opacity:.9}
.otklik-msg[data-status="failed"]{background:#fde8e8;color:#7f1d1d;border-color:#f5a3a3}
.otklik-msg[data-status="failed"] .otklik-who{color:#7f1d1d}
.otklik-choices{display:flex;flex-wrap:wrap;gap:6px;margin-top:8px}
.otklik-choice{background:#fff;color:var(--ok-accent-dark);border:2px solid var(--ok-accent);border-radius:8px;padding:6px 12px;text-align:left}
.otklik-choice:hover:not(:disabled){background:#e0e8ff}
.otklik-choice:disabled{cursor:default;color:#4b5563;border-color:#9ca3af;background:#f3f4f6}
.otklik-links{margin:8px 0 0;padding-left:1.1em}
.otklik-image-box{margin:8px 0 0}
.otklik-image{display:block;width:200px;max-width:100%;height:auto;background:#fff}
.otklik-links+.otklik-text{margin-top:1em}
.otklik-links a{color:#1e3a8a;text-decoration:underline}
.otklik-msg[data-from="client"] .otklik-links a{color:#fff}
.otklik-restart:disabled{cursor:default;color:#4b5563;border-color:#9ca3af;background:#f3f4f6}
.otklik-restart{margin-top:8px;background:#fff;color:var(--ok-accent-dark);border:2px solid var(--ok-accent-dark);border-radius:8px;padding:6px 12px}
.otklik-status{min-height:0;padding:0 12px;font-size:.9em;color:#7c2d12;background:#fff7ed}
.otklik-status:not(:empty){padding:6px 12px;border-top:1px solid #fed7aa}
.otklik-status.otklik-ok{color:#14532d;background:#f0fdf4}
.otklik-notice{padding:0 12px}
.otklik-notice>div{margin:6px 0;padding:6px 10px;border-radius:6px;background:#fef2f2;color:#7f1d1d;border:1px solid #fca5a5;font-size:.9em}
.otklik-form{display:flex;gap:8px;padding:10px 12px 6px;border-top:1px solid var(--ok-line);background:#fff;align-items:flex-end}
.otklik-input{flex:1;resize:none;min-height:2.6em;max-height:8em;font:inherit;color:var(--ok-text);background:#fff;border:2px solid #6b7280;border-radius:8px;padding:6px 10px}
/* A panel under 22 em wide (a phone with large text): the input takes a row of
   its own and the buttons the next, so that neither is squeezed. */
@container (max-width:22em){.otklik-form{flex-wrap:wrap;justify-content:flex-end}.otklik-input{flex-basis:100%}}
.otklik-send{flex:none;min-height:2.75em;background:var(--ok-accent);color:#fff;border:2px solid var(--ok-accent);border-radius:8px;padding:8px 14px;font-weight:600}
.otklik-send:hover{background:var(--ok-accent-dark)}
.otklik-mic{flex:none;display:inline-flex;align-items:center;justify-content:center;width:2.75em;height:2.75em;padding:0;background:#fff;color:var(--ok-accent-dark);border:2px solid var(--ok-accent);border-radius:8px}
.otklik-mic:hover{background:#e0e8ff}
.otklik-mic[hidden]{display:none}
.otklik-mic svg{width:1.5em;height:1.5em;pointer-events:none}
.otklik-mic.otklik-recording{background:#b91c1c;border-color:#b91c1c;color:#fff}
.otklik-mic.otklik-recording:hover{background:#991b1b}
.otklik-rec{display:flex;align-items:center;gap:8px;padding:6px 12px;border-top:1px solid #fecaca;background:#fef2f2;color:#7f1d1d;font-size:.9em}
.otklik-rec[hidden]{display:none}
.otklik-rec-dot{flex:none;width:.75em;height:.75em;border-radius:50%;background:#dc2626}
.otklik-rec-time{margin-left:auto;font-weight:700;font-variant-numeric:tabular-nums;white-space:nowrap}
.otklik-tools{display:flex;gap:8px;padding:4px 12px 10px;background:#fff;align-items:center;flex-wrap:wrap}
.otklik-tool{background:#fff;color:var(--ok-accent-dark);border:2px solid #6b7280;border-radius:8px;padding:4px 10px;font-size:.85em}
.otklik-tool[aria-pressed="true"]{background:var(--ok-accent-dark);color:#fff;border-color:var(--ok-accent-dark)}
.otklik-tool[hidden]{display:none}
.otklik-counter{margin-left:auto;font-size:.8em;color:var(--ok-muted)}
.otklik-counter.otklik-over{color:#b91c1c;font-weight:700}
.otklik-root :focus-visible{outline:3px solid var(--ok-focus);outline-offset:2px}
.otklik-input:focus-visible{outline:3px solid var(--ok-focus);outline-offset:1px}
`;

  function injectStyle() {
    if (document.getElementById('otklik-style')) return;
    const st = document.createElement('style');
    st.id = 'otklik-style';
    st.textContent = CSS;
    (document.head || document.documentElement).appendChild(st);
  }

  // ---------------------------------------------------------------- DOM helpers
  function el(tag, attrs, children) {
    const e = document.createElement(tag);
    if (attrs) {
      for (const [k, v] of Object.entries(attrs)) {
        if (v === null || v === undefined || v === false) continue;
        if (k === 'class') e.className = v;
        else if (k === 'text') e.textContent = v;
        else e.setAttribute(k, v === true ? '' : String(v));
      }
    }
    if (children) for (const c of children) if (c) e.appendChild(c);
    return e;
  }

  function safeUrl(u) {
    if (typeof u !== 'string') return null;
    try {
      const url = new URL(u, location.href);
      return url.protocol === 'http:' || url.protocol === 'https:' ? url.href : null;
    } catch (e) {
      return null;
    }
  }

  function charCount(s) {
    let n = 0;
    for (const _ of s) n++; // code points, as the server counts them
    return n;
  }

  // ---------------------------------------------------------------- state
  const state = {
    socket: null,
    connected: false, // the current socket is open
    everConnected: false,
    welcomed: false, // the current socket got its welcome
    dropped: false, // a drop happened since the last successful open
    backoff: 500,
    timer: null,
    lastSeq: 0, // highest seq rendered in this page
    seqs: new Map(), // seq -> element
    byId: new Map(), // client message id -> element (own messages of this page)
    maxChars: 2000,
    voice: false, // the server takes voice messages
    voiceMaxSeconds: 20,
    voicePending: new Map(), // voice message id -> {node, timer} until its echo
    serverSegment: null,
    largeUserSet: store.get(KEY_LARGE) !== null,
    outbox: [], // non-persistent requests (start) waiting for the socket
    open: false,
    unread: false,
    started: false, // the first connection was attempted
    okTimer: null,
  };

  let ui = null;

  // ---------------------------------------------------------------- UI
  function buildUI() {
    injectStyle();
    let mount = null;
    if (typeof config.container === 'string' && config.container) {
      try {
        mount = document.querySelector(config.container);
      } catch (e) {
        mount = null;
      }
      if (!mount) console.warn('Otklik: container not found, using the floating panel:', config.container);
    }
    const floating = !mount;
    const panelId = 'otklik-panel-' + Math.random().toString(36).slice(2, 8);

    const root = el('div', { class: 'otklik-root ' + (floating ? 'otklik-floating' : 'otklik-embedded'), 'data-testid': 'otklik-root' });
    const panel = el('section', {
      class: 'otklik-panel',
      id: panelId,
      role: floating ? 'dialog' : 'region',
      'aria-modal': floating ? 'false' : null,
      'aria-label': title,
      'data-testid': 'otklik-panel',
    });

    const head = el('div', { class: 'otklik-head' }, [el('h2', { class: 'otklik-title', text: title })]);
    let closeBtn = null;
    if (floating) {
      closeBtn = el('button', { type: 'button', class: 'otklik-close', 'aria-label': 'Свернуть чат', 'data-testid': 'otklik-close', text: 'Свернуть' });
      head.appendChild(closeBtn);
    }

    const log = el('div', {
      class: 'otklik-log',
      role: 'log',
      'aria-live': 'polite',
      'aria-relevant': 'additions',
      'aria-label': 'Переписка',
      tabindex: '-1',
      'data-testid': 'otklik-log',
    });
    const status = el('div', { class: 'otklik-status', 'aria-live': 'polite', 'aria-atomic': 'true', 'data-testid': 'otklik-status' });
    const notice = el('div', { class: 'otklik-notice', 'data-testid': 'otklik-notice' });

    const inputId = panelId + '-input';
    const label = el('label', { for: inputId, class: 'otklik-sr', text: 'Ваше сообщение' });
    const input = el('textarea', {
      id: inputId,
      class: 'otklik-input',
      rows: '2',
      placeholder: 'Напишите вопрос…',
      autocomplete: 'off',
      'data-testid': 'otklik-input',
    });
    const send = el('button', { type: 'submit', class: 'otklik-send', 'data-testid': 'otklik-send', text: 'Отправить' });
    // Shown once the server says it takes voice messages and the browser can record.
    const mic = el('button', { type: 'button', class: 'otklik-mic', hidden: true, 'data-testid': 'otklik-mic' });
    const form = el('form', { class: 'otklik-form', 'aria-label': 'Новое сообщение' }, [label, input, mic, send]);
    // While recording: that it records, for how long, and how to stop.
    // The words are set when recording starts, so screen readers announce them.
    const recSay = el('span', { role: 'status' });
    const recTime = el('span', { class: 'otklik-rec-time', 'aria-hidden': 'true', 'data-testid': 'otklik-rec-time' });
    const rec = el('div', { class: 'otklik-rec', hidden: true, 'data-testid': 'otklik-rec' }, [
      el('span', { class: 'otklik-rec-dot', 'aria-hidden': 'true' }),
      recSay,
      recTime,
    ]);

    const large = el('button', { type: 'button', class: 'otklik-tool', 'aria-pressed': 'false', 'data-testid': 'otklik-large', text: 'Крупный текст' });
    const counter = el('span', { class: 'otklik-counter', 'data-testid': 'otklik-counter' });
    // Notifications: the settings (the same input as typing it), and the
    // browser's permission to show notifications, asked on this click.
    const notifyBtn = el('button', { type: 'button', class: 'otklik-tool', 'data-testid': 'otklik-notify', text: 'Уведомления' });
    notifyBtn.addEventListener('click', openNotifySettings);
    // The service search's profile: sends «мой профиль», an engine rule on every channel.
    const profile = el('button', { type: 'button', class: 'otklik-tool', 'data-testid': 'otklik-profile', text: 'Мой профиль' });
    const tools = el('div', { class: 'otklik-tools' }, [large, notifyBtn, profile, counter]);

    panel.append(head, log, status, notice, rec, form, tools);
    root.appendChild(panel);

    let launcher = null;
    if (floating) {
      launcher = el('button', {
        type: 'button',
        class: 'otklik-launcher',
        'aria-controls': panelId,
        'aria-expanded': 'false',
        'data-testid': 'otklik-launcher',
      });
      launcher.appendChild(document.createTextNode('Помощник'));
      document.body.appendChild(launcher);
      document.body.appendChild(root);
    } else {
      mount.appendChild(root);
    }

    ui = { root, panel, log, status, notice, form, input, send, large, mic, rec, recSay, recTime, counter, closeBtn, launcher, floating };
    setMic(false);

    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      submitText();
    });
    input.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing && ev.keyCode !== 229) {
        ev.preventDefault();
        submitText();
      }
    });
    input.addEventListener('input', updateCounter);
    large.addEventListener('click', () => {
      setLarge(!root.classList.contains('otklik-large'));
      store.set(KEY_LARGE, root.classList.contains('otklik-large') ? '1' : '0');
      state.largeUserSet = true;
    });
    mic.addEventListener('click', toggleVoice);
    profile.addEventListener('click', () => sendWords('мой профиль'));
    if (floating) {
      launcher.addEventListener('click', () => setOpen(true, true));
      closeBtn.addEventListener('click', () => setOpen(false, true));
      root.addEventListener('keydown', (ev) => {
        if (ev.key === 'Escape') {
          ev.stopPropagation();
          setOpen(false, true);
        }
      });
    }

    // Large text: the user's own choice wins, then the config.
    const storedLarge = store.get(KEY_LARGE);
    if (storedLarge !== null) setLarge(storedLarge === '1');
    else if (config.largeText) setLarge(true);
  }

  function setLarge(on) {
    const atEnd = nearBottom(); // the latest message stays in view at the new size
    ui.root.classList.toggle('otklik-large', !!on);
    ui.large.setAttribute('aria-pressed', on ? 'true' : 'false');
    scrollToEnd(atEnd);
  }

  function setOpen(open, byUser) {
    state.open = !!open;
    if (!ui.floating) {
      state.open = true;
      return;
    }
    ui.panel.hidden = !state.open;
    ui.root.style.display = state.open ? '' : 'none';
    ui.launcher.setAttribute('aria-expanded', state.open ? 'true' : 'false');
    if (!state.open) stopRecording(false); // a collapsed chat does not listen
    if (state.open) {
      state.unread = false;
      renderBadge();
      ensureStarted();
      scrollToEnd(true);
      if (byUser) ui.input.focus();
    } else if (byUser) {
      ui.launcher.focus();
    }
  }

  function renderBadge() {
    if (!ui.launcher) return;
    const old = ui.launcher.querySelector('.otklik-badge');
    if (state.unread && !old) {
      ui.launcher.appendChild(el('span', { class: 'otklik-badge', 'aria-hidden': 'true' }));
      ui.launcher.setAttribute('aria-label', 'Помощник: новое сообщение');
    } else if (!state.unread && old) {
      old.remove();
      ui.launcher.removeAttribute('aria-label');
    }
  }

  function nearBottom() {
    const l = ui.log;
    return l.scrollHeight - l.scrollTop - l.clientHeight < 80;
  }
  function scrollToEnd(force) {
    if (force || nearBottom()) ui.log.scrollTop = ui.log.scrollHeight;
  }

  function setStatus(text, ok) {
    clearTimeout(state.okTimer);
    ui.status.textContent = text || '';
    ui.status.classList.toggle('otklik-ok', !!ok);
    if (ok) {
      state.okTimer = setTimeout(() => {
        if (ui.status.textContent === text) ui.status.textContent = '';
        ui.status.classList.remove('otklik-ok');
      }, 3000);
    }
  }

  // ---------------------------------------------------------- notifications
  function openNotifySettings() {
    if ('Notification' in window && Notification.permission === 'default') {
      try {
        Notification.requestPermission();
      } catch (e) {
        /* an old browser: the chat shows notifications anyway */
      }
    }
    const m = { type: 'text', id: uuid(), text: 'Настроить уведомления' };
    addPending(m);
    renderOwn(m);
    ensureStarted();
    transmit(m);
  }

  // A notification (it carries its unsubscribe button) is also shown by the
  // browser, once, when the client allowed it.
  function notifyBrowser(msg, seq) {
    const isNotice = Array.isArray(msg.choices) && msg.choices.some((c) => c && String(c.id).startsWith('notify_unsub:'));
    if (!isNotice || !('Notification' in window) || Notification.permission !== 'granted') return;
    if (seq <= Number(store.get(KEY_NOTIFIED) || 0)) return;
    store.set(KEY_NOTIFIED, String(seq));
    try {
      new Notification(title, { body: String(msg.text || ''), tag: 'otklik-' + seq });
    } catch (e) {
      /* some mobile browsers only allow notifications from a service worker */
    }
  }

  function showNotice(text) {
    ui.notice.textContent = '';
    if (!text) return;
    // A fresh role="alert" element is announced by screen readers every time.
    ui.notice.appendChild(el('div', { role: 'alert', 'data-testid': 'otklik-alert', text }));
  }

  function updateCounter() {
    const n = charCount(ui.input.value);
    if (n > state.maxChars * 0.8) {
      ui.counter.textContent = `${n} из ${state.maxChars}`;
      ui.counter.classList.toggle('otklik-over', n > state.maxChars);
    } else {
      ui.counter.textContent = '';
      ui.counter.classList.remove('otklik-over');
    }
  }

  const WHO = { bot: 'Помощник', operator: 'Оператор', client: 'Вы' };

  // The list of links of a message (null when none is a safe http(s) address).
  function buildLinks(links) {
    if (!Array.isArray(links) || !links.length) return null;
    const ul = el('ul', { class: 'otklik-links' });
    for (const l of links) {
      const href = l && safeUrl(l.url);
      if (!href) continue;
      const a = el('a', { href, target: '_blank', rel: 'noopener noreferrer', 'data-testid': 'otklik-link' });
      a.textContent = String(l.title || href);
      a.appendChild(el('span', { class: 'otklik-sr', text: ' (откроется в новом окне)' }));
      ul.appendChild(el('li', null, [a]));
    }
    return ul.childNodes.length ? ul : null;
  }

  // A message's picture (a payment's QR code): a PNG carried inline, shown
  // with its description; null for anything else.
  function buildImage(image) {
    if (!image || image.mime !== 'image/png' || typeof image.base64 !== 'string') return null;
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(image.base64)) return null;
    const img = el('img', { class: 'otklik-image', 'data-testid': 'otklik-image', alt: String(image.alt || ''), src: 'data:image/png;base64,' + image.base64 });
    return el('div', { class: 'otklik-image-box' }, [img]);
  }

  // The text, with the links after its first `linksAt` paragraphs (split on a blank
  // line): right after the answer they come with, before the question that follows.
  // Without linksAt the links follow the whole text. A picture (a payment's QR code)
  // goes where its `at` says, the same way.
  function buildMessage(from, text, links, linksAt, image) {
    const m = el('div', { class: 'otklik-msg', 'data-testid': 'otklik-msg', 'data-from': from });
    if (from === 'operator') {
      // Visible: the citizen should know a person is answering.
      m.appendChild(el('span', { class: 'otklik-who', text: 'Оператор' }));
      m.appendChild(el('span', { class: 'otklik-sr', text: ': ' }));
    } else {
      m.appendChild(el('span', { class: 'otklik-sr', text: (WHO[from] || 'Помощник') + ': ' }));
    }
    const full = String(text == null ? '' : text);
    const paragraphs = full.split('\n\n');
    const place = (n) => (Number.isInteger(n) && n >= 0 ? Math.min(n, paragraphs.length) : paragraphs.length);
    // what goes between the paragraphs, by position
    const inserts = [];
    const list = buildLinks(links);
    if (list) inserts.push([place(linksAt), list]);
    const img = buildImage(image);
    if (img) inserts.push([place(image && image.at), img]);
    inserts.sort((a, b) => a[0] - b[0]);
    let done = 0;
    for (const [at, node] of inserts) {
      const part = paragraphs.slice(done, at).join('\n\n');
      if (part) m.appendChild(el('p', { class: 'otklik-text', text: part }));
      m.appendChild(node);
      done = Math.max(done, at);
    }
    const rest = paragraphs.slice(done).join('\n\n');
    if (rest || !inserts.length) m.appendChild(el('p', { class: 'otklik-text', text: rest }));
    return m;
  }

  function setMeta(m, text) {
    let meta = m.querySelector('.otklik-meta');
    if (!text) {
      if (meta) meta.remove();
      return;
    }
    if (!meta) {
      meta = el('span', { class: 'otklik-meta' });
      m.appendChild(meta);
    }
    meta.textContent = text;
  }

  // Confirmed messages go before the first still-pending one, so that pending
  // messages always stay at the bottom in the order they were written.
  function insertConfirmed(node) {
    const firstPending = ui.log.querySelector('.otklik-msg[data-status="pending"]');
    if (firstPending && firstPending !== node) ui.log.insertBefore(node, firstPending);
    else ui.log.appendChild(node);
  }

  function refreshChoices() {
    const withChoices = ui.log.querySelectorAll('.otklik-msg[data-seq] .otklik-choices');
    let latest = null;
    // The latest bot/operator message decides; if it has no buttons, none are active.
    const msgs = ui.log.querySelectorAll('.otklik-msg[data-seq]:not([data-from="client"])');
    if (msgs.length) latest = msgs[msgs.length - 1].querySelector('.otklik-choices');
    let lostFocus = false;
    withChoices.forEach((box) => {
      const enable = box === latest && box.dataset.used !== '1';
      box.querySelectorAll('button').forEach((b) => {
        if (!enable && document.activeElement === b) lostFocus = true;
        b.disabled = !enable;
      });
    });
    // «Начать заново» only on the latest message as well.
    const last = msgs.length ? msgs[msgs.length - 1] : null;
    ui.log.querySelectorAll('.otklik-restart').forEach((b) => {
      const enable = last && last.contains(b) && b.dataset.used !== '1';
      if (!enable && document.activeElement === b) lostFocus = true;
      b.disabled = !enable;
    });
    if (lostFocus) ui.input.focus();
  }

  function renderServerMessage(msg) {
    const seq = Number(msg.seq);
    if (!Number.isFinite(seq) || seq <= 0) return;
    if (state.seqs.has(seq)) return; // already rendered in this page
    const from = msg.from === 'client' || msg.from === 'operator' ? msg.from : 'bot';
    const wasNearBottom = nearBottom();
    if (from === 'bot') notifyBrowser(msg, seq);

    // A voice message's echo: what the server understood replaces the placeholder.
    if (from === 'client' && typeof msg.id === 'string') forgetVoice(msg.id);

    let node = null;
    if (from === 'client' && typeof msg.id === 'string' && state.byId.has(msg.id)) {
      node = state.byId.get(msg.id);
      if (node.dataset.seq) return; // confirmed already (should not happen: seqs has it)
      node.dataset.status = 'delivered';
      node.classList.add('otklik-delivered');
      setMeta(node, '');
      removePending(msg.id);
      node.remove();
    } else {
      node = from === 'client' ? buildMessage(from, msg.text) : buildMessage(from, msg.text, msg.links, msg.links_at, msg.image);
      if (from === 'client') {
        node.dataset.status = 'delivered';
        node.classList.add('otklik-delivered');
        if (msg.voice === true) setMeta(node, 'Распознано из голосового сообщения');
        if (typeof msg.id === 'string') {
          state.byId.set(msg.id, node);
          node.dataset.id = msg.id;
          removePending(msg.id);
        }
      }
      if (from !== 'client') {
        if (Array.isArray(msg.choices) && msg.choices.length) {
          const box = el('div', { class: 'otklik-choices', role: 'group', 'aria-label': 'Варианты ответа' });
          for (const c of msg.choices) {
            if (!c || c.id == null) continue;
            const label = String(c.label == null ? c.id : c.label);
            const b = el('button', { type: 'button', class: 'otklik-choice', 'data-testid': 'otklik-choice', 'data-choice-id': String(c.id), text: label });
            b.addEventListener('click', () => sendChoice(String(c.id), label, box));
            box.appendChild(b);
          }
          node.appendChild(box);
        }
        const actions = Array.isArray(msg.actions) ? msg.actions : [];
        if (actions.includes('handoff')) node.dataset.handoff = '1';
        if (actions.includes('end')) {
          const r = el('button', { type: 'button', class: 'otklik-restart', 'data-testid': 'otklik-restart', text: 'Начать заново' });
          r.addEventListener('click', () => {
            r.dataset.used = '1';
            r.disabled = true;
            sendStart();
          });
          node.appendChild(r);
        }
        if (!state.open) {
          state.unread = true;
          renderBadge();
        }
      }
    }
    node.dataset.seq = String(seq);
    state.seqs.set(seq, node);
    insertConfirmed(node);
    if (seq > state.lastSeq) state.lastSeq = seq;
    if (seq > storedLastSeq()) store.set(KEY_LAST, String(seq));
    refreshChoices();
    scrollToEnd(wasNearBottom || from === 'client');
  }

  function renderOwn(m) {
    // An optimistic copy of the client's own message until the server echoes it.
    const node = buildMessage('client', m.type === 'choice' ? m.label : m.text);
    node.dataset.status = 'pending';
    node.dataset.id = m.id;
    setMeta(node, 'Отправляется…');
    state.byId.set(m.id, node);
    ui.log.appendChild(node);
    scrollToEnd(true);
    return node;
  }

  function markFailed(id) {
    const node = state.byId.get(id);
    if (node && !node.dataset.seq) {
      node.dataset.status = 'failed';
      setMeta(node, 'Не отправлено');
      // A failed message is not waiting any more: later messages go after it.
      const firstPending = ui.log.querySelector('.otklik-msg[data-status="pending"]');
      if (firstPending) ui.log.insertBefore(node, firstPending);
    }
  }

  // ---------------------------------------------------------------- sending
  function submitText() {
    const text = ui.input.value;
    if (!text.trim()) {
      if (recording) stopRecording(true); // «Отправить» while recording sends the recording
      return;
    }
    const n = charCount(text);
    if (n > state.maxChars) {
      showNotice(`Сообщение слишком длинное: не больше ${state.maxChars} знаков.`);
      ui.input.focus();
      return;
    }
    showNotice('');
    const m = { type: 'text', id: uuid(), text };
    ui.input.value = '';
    updateCounter();
    addPending(m);
    renderOwn(m);
    ensureStarted();
    transmit(m);
  }

  // Fixed words sent as the client's message (the «Мой профиль» button).
  function sendWords(text) {
    const m = { type: 'text', id: uuid(), text };
    addPending(m);
    renderOwn(m);
    ensureStarted();
    transmit(m);
  }

  function sendChoice(choiceId, label, box) {
    const m = { type: 'choice', id: uuid(), choice: choiceId, label };
    box.dataset.used = '1';
    box.dataset.pendingId = m.id;
    refreshChoices();
    addPending(m);
    renderOwn(m);
    transmit(m);
  }

  function sendStart() {
    const m = { type: 'start', id: uuid() };
    if (!transmit(m)) state.outbox.push(m);
  }

  function transmit(m) {
    const ws = state.socket;
    if (ws && state.connected && ws.readyState === WebSocket.OPEN) {
      try {
        ws.send(JSON.stringify(m));
        return true;
      } catch (e) {
        return false;
      }
    }
    if (!state.started) ensureStarted();
    else if (state.timer) connect(); // waiting out a backoff: the user's action retries now
    return false; // stays pending; sent after the next hello
  }

  // ---------------------------------------------------------------- connection
  function ensureStarted() {
    if (state.started) return;
    state.started = true;
    connect();
  }

  function connect() {
    clearTimeout(state.timer);
    state.timer = null;
    const old = state.socket;
    if (old && (old.readyState === WebSocket.OPEN || old.readyState === WebSocket.CONNECTING)) return;
    let ws;
    try {
      ws = new WebSocket(`${WS_BASE}/ws/chat`);
    } catch (e) {
      onDrop(null);
      return;
    }
    state.socket = ws;
    api.socket = ws;
    ws.addEventListener('open', () => {
      if (ws !== state.socket) return;
      state.connected = true;
      state.welcomed = false;
      // hello carries the highest seq rendered in this page: a fresh page (reload)
      // starts from 0 and gets the whole conversation replayed.
      const hello = { type: 'hello', last_seq: state.lastSeq || 0, segment };
      if (clientId) hello.client = clientId;
      ws.send(JSON.stringify(hello));
      for (const m of loadPending()) ws.send(JSON.stringify(m));
      const out = state.outbox.splice(0);
      for (const m of out) ws.send(JSON.stringify(m));
    });
    ws.addEventListener('message', (ev) => {
      if (ws !== state.socket) return;
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch (e) {
        return;
      }
      if (msg && typeof msg === 'object') handle(msg);
    });
    ws.addEventListener('close', () => {
      if (ws !== state.socket) return;
      onDrop(ws);
    });
    ws.addEventListener('error', () => {
      /* close follows */
    });
  }

  function onDrop(ws) {
    state.connected = false;
    if (ws && state.socket === ws) state.socket = null;
    state.dropped = true;
    setStatus('Нет связи. Переподключаюсь…');
    // 0.5 s, 1 s, 2 s, 4 s, 5 s, 5 s…; reset by the next welcome.
    scheduleReconnect(state.backoff);
    state.backoff = Math.min(state.backoff * 2, 5000);
  }

  function scheduleReconnect(delay) {
    clearTimeout(state.timer);
    state.timer = setTimeout(() => {
      state.timer = null;
      connect();
    }, delay);
  }

  function reconnect() {
    // Drop the current socket (if any) and connect again at once.
    const ws = state.socket;
    state.socket = null;
    state.connected = false;
    state.started = true;
    if (ws) {
      try {
        ws.close();
      } catch (e) {
        /* ignore */
      }
    }
    state.backoff = 500;
    connect();
  }

  function handle(msg) {
    switch (msg.type) {
      case 'welcome': {
        state.welcomed = true;
        if (typeof msg.client === 'string' && msg.client !== clientId) {
          // A new identity (a first visit, or one the server no longer
          // knows): its conversation replays from the start.
          clientId = msg.client;
          store.set(KEY_CLIENT, clientId);
          store.set(KEY_LAST, '0');
          state.lastSeq = 0;
          state.seqs.clear();
          api.clientId = clientId;
        }
        state.backoff = 500;
        if (ui.notice.textContent && state.dropped) showNotice('');
        if (state.dropped) setStatus('Связь восстановлена', true);
        else setStatus('');
        state.dropped = false;
        state.everConnected = true;
        const mc = Number(msg.max_chars);
        if (Number.isFinite(mc) && mc > 0) state.maxChars = mc;
        state.voice = msg.voice === true;
        const vs = Number(msg.voice_max_seconds);
        if (Number.isFinite(vs) && vs > 0) state.voiceMaxSeconds = vs;
        state.serverSegment = typeof msg.segment === 'string' ? msg.segment : null;
        ui.mic.hidden = !(state.voice && canRecord());
        if (ui.mic.hidden) stopRecording(false);
        if (state.serverSegment === 'senior' && !state.largeUserSet) setLarge(true);
        updateCounter();
        break;
      }
      case 'msg':
        renderServerMessage(msg);
        break;
      case 'error': {
        if (msg.code === 'starting' && !msg.id && !state.welcomed) {
          // The server is still loading: retry the hello after the backoff.
          showNotice(typeof msg.message === 'string' ? msg.message : '');
          if (state.socket) state.socket.close();
          break;
        }
        const text = typeof msg.message === 'string' && msg.message ? msg.message : 'Не удалось отправить сообщение.';
        showNotice(text);
        const id = typeof msg.id === 'string' ? msg.id : null;
        if (id && forgetVoice(id)) break; // a voice message not understood: nothing to resend
        if (id) {
          const pending = loadPending().find((x) => x.id === id);
          const node = state.byId.get(id);
          const known = pending || (node && !node.dataset.seq);
          if (known) {
            removePending(id);
            markFailed(id);
            if (msg.code === 'too_long') {
              const back = pending ? (pending.type === 'text' ? pending.text : '') : node.querySelector('.otklik-text').textContent;
              if (back) {
                const cur = ui.input.value;
                ui.input.value = cur ? back + '\n' + cur : back;
                updateCounter();
                ui.input.focus();
              }
            }
            // A failed choice: its buttons can be pressed again.
            const box = ui.log.querySelector(`.otklik-choices[data-pending-id="${CSS_escape(id)}"]`);
            if (box) {
              delete box.dataset.used;
              delete box.dataset.pendingId;
              refreshChoices();
            }
          }
        }
        break;
      }
      default:
        break; // unknown types are ignored (forward compatibility)
    }
  }

  function CSS_escape(s) {
    return window.CSS && CSS.escape ? CSS.escape(s) : String(s).replace(/["\\]/g, '\\$&');
  }

  // ---------------------------------------------------------------- voice input
  // The microphone button: getUserMedia, Web Audio collects the samples in the
  // page, and when the citizen presses again (or after voiceMaxSeconds) the
  // browser's own resampler (an OfflineAudioContext) makes 16 kHz mono of them,
  // sent as 16-bit PCM right after a {"type": "voice"} message. The server
  // echoes the recognised words as the citizen's message, then answers.
  const VOICE_RATE = 16000;
  const MIC_ERRORS = {
    NotAllowedError: 'Нет доступа к микрофону. Разрешите его в настройках браузера или напишите сообщение.',
    SecurityError: 'Нет доступа к микрофону. Разрешите его в настройках браузера или напишите сообщение.',
    NotFoundError: 'Микрофон не найден. Подключите его или напишите сообщение.',
    NotReadableError: 'Микрофон занят другой программой. Закройте её или напишите сообщение.',
  };

  function canRecord() {
    return !!(
      navigator.mediaDevices &&
      typeof navigator.mediaDevices.getUserMedia === 'function' &&
      (window.AudioContext || window.webkitAudioContext) &&
      (window.OfflineAudioContext || window.webkitOfflineAudioContext)
    );
  }

  function svg(kind) {
    const NS = 'http://www.w3.org/2000/svg';
    const s = document.createElementNS(NS, 'svg');
    s.setAttribute('viewBox', '0 0 24 24');
    s.setAttribute('aria-hidden', 'true');
    s.setAttribute('focusable', 'false');
    const add = (tag, attrs) => {
      const e = document.createElementNS(NS, tag);
      for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
      s.appendChild(e);
    };
    if (kind === 'stop') {
      add('rect', { x: '5', y: '5', width: '14', height: '14', rx: '2', fill: 'currentColor' });
    } else {
      add('rect', { x: '9', y: '2.5', width: '6', height: '12', rx: '3', fill: 'currentColor' });
      const line = { fill: 'none', stroke: 'currentColor', 'stroke-width': '2', 'stroke-linecap': 'round' };
      add('path', Object.assign({ d: 'M5.5 11a6.5 6.5 0 0 0 13 0' }, line));
      add('path', Object.assign({ d: 'M12 17.5v4' }, line));
    }
    return s;
  }

  function setMic(on) {
    const b = ui.mic;
    const label = on ? 'Остановить запись и отправить' : 'Записать голосовое сообщение';
    b.classList.toggle('otklik-recording', on);
    b.setAttribute('aria-label', label);
    b.title = label;
    b.replaceChildren(svg(on ? 'stop' : 'mic'));
    ui.rec.hidden = !on;
    ui.recSay.textContent = on ? 'Идёт запись. Чтобы отправить, нажмите кнопку записи ещё раз.' : '';
  }

  let recording = null; // {ctx, stream, nodes, chunks, length, rate, ready, started, timers}

  function toggleVoice() {
    if (recording) stopRecording(true);
    else startRecording();
  }

  function clock(ms) {
    const s = Math.max(0, Math.floor(ms / 1000));
    return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
  }

  async function startRecording() {
    if (recording || !canRecord()) return;
    showNotice('');
    const Ctx = window.AudioContext || window.webkitAudioContext;
    // Made at the press itself: a context made after an await may stay suspended.
    const r = { ctx: new Ctx(), stream: null, nodes: [], chunks: [], length: 0, ready: false, timers: [] };
    recording = r;
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true } });
    } catch (e) {
      if (recording === r) stopRecording(false);
      showNotice(MIC_ERRORS[e && e.name] || 'Не удалось включить микрофон. Напишите, пожалуйста, сообщение.');
      return;
    }
    r.stream = stream;
    if (recording !== r) {
      stream.getTracks().forEach((t) => t.stop()); // pressed again while the browser asked
      return;
    }
    const ctx = r.ctx;
    const source = ctx.createMediaStreamSource(stream);
    // Two low-pass filters below 8 kHz, so that the resampling to 16 kHz at the
    // end does not fold higher sounds into speech.
    const lowpass = () => {
      const f = ctx.createBiquadFilter();
      f.type = 'lowpass';
      f.frequency.value = 7000;
      return f;
    };
    const f1 = lowpass();
    const f2 = lowpass();
    // ScriptProcessorNode (deprecated, yet in every browser) rather than an
    // AudioWorklet: a worklet is a script module the host page's CSP must
    // allow, and this needs nothing.
    const tap = ctx.createScriptProcessor(4096, 1, 1);
    tap.onaudioprocess = (ev) => {
      ev.outputBuffer.getChannelData(0).fill(0);
      if (recording !== r) return;
      const d = ev.inputBuffer.getChannelData(0);
      r.chunks.push(new Float32Array(d));
      r.length += d.length;
    };
    source.connect(f1);
    f1.connect(f2);
    f2.connect(tap);
    tap.connect(ctx.destination); // a processor runs only when connected; it outputs silence
    r.nodes = [source, f1, f2, tap];
    r.rate = ctx.sampleRate;
    if (ctx.state === 'suspended') ctx.resume().catch(() => {});
    for (const t of stream.getAudioTracks()) t.addEventListener('ended', () => recording === r && stopRecording(true));
    r.ready = true;
    r.started = Date.now();
    const max = state.voiceMaxSeconds * 1000;
    const tick = () => {
      ui.recTime.textContent = `${clock(Date.now() - r.started)} из ${clock(max)}`;
    };
    tick();
    r.timers.push(setInterval(tick, 250));
    r.timers.push(setTimeout(() => recording === r && stopRecording(true), max));
    setMic(true);
  }

  function stopRecording(send) {
    const r = recording;
    if (!r) return;
    recording = null;
    r.timers.forEach((t) => {
      clearInterval(t);
      clearTimeout(t);
    });
    for (const n of r.nodes) {
      try {
        n.disconnect();
      } catch (e) {
        /* already */
      }
    }
    if (r.stream) r.stream.getTracks().forEach((t) => t.stop());
    r.ctx.close().catch(() => {});
    setMic(false);
    if (send && r.ready && r.length) sendVoice(r);
  }

  // The recording as 16 kHz mono 16-bit little-endian PCM, at most voiceMaxSeconds.
  async function toPcm16k(r) {
    const all = new Float32Array(r.length);
    let at = 0;
    for (const c of r.chunks) {
      all.set(c, at);
      at += c.length;
    }
    let out = all;
    if (r.rate !== VOICE_RATE) {
      const Off = window.OfflineAudioContext || window.webkitOfflineAudioContext;
      const off = new Off(1, Math.ceil((all.length * VOICE_RATE) / r.rate), VOICE_RATE);
      const buf = off.createBuffer(1, all.length, r.rate);
      buf.getChannelData(0).set(all);
      const src = off.createBufferSource();
      src.buffer = buf;
      src.connect(off.destination);
      src.start(0);
      out = (await off.startRendering()).getChannelData(0);
    }
    const n = Math.min(out.length, state.voiceMaxSeconds * VOICE_RATE);
    const view = new DataView(new ArrayBuffer(n * 2));
    for (let i = 0; i < n; i++) {
      const v = Math.max(-1, Math.min(1, out[i]));
      view.setInt16(i * 2, v < 0 ? v * 0x8000 : v * 0x7fff, true);
    }
    return view.buffer;
  }

  async function sendVoice(r) {
    const id = uuid();
    // A placeholder until the server echoes what it understood.
    const node = buildMessage('client', 'Голосовое сообщение. Распознаю…');
    node.dataset.status = 'pending';
    node.dataset.voice = '1';
    node.dataset.id = id;
    ui.log.appendChild(node);
    scrollToEnd(true);
    // Recognition may be slow, or the answer may come after a reconnect; after
    // two minutes it is not coming.
    const timer = setTimeout(() => {
      if (forgetVoice(id)) showNotice('Голосовое сообщение осталось без ответа. Запишите его ещё раз или напишите сообщение.');
    }, 120000);
    state.voicePending.set(id, { node, timer });
    let pcm;
    try {
      pcm = await toPcm16k(r);
    } catch (e) {
      forgetVoice(id);
      showNotice('Не удалось обработать запись. Запишите её ещё раз или напишите сообщение.');
      return;
    }
    const ws = state.socket;
    try {
      if (!(ws && state.connected && ws.readyState === WebSocket.OPEN)) throw new Error('offline');
      ws.send(JSON.stringify({ type: 'voice', id, rate: VOICE_RATE }));
      ws.send(pcm);
    } catch (e) {
      forgetVoice(id);
      showNotice('Нет связи, голосовое сообщение не отправлено. Запишите его ещё раз, когда связь восстановится.');
      if (state.timer) connect(); // waiting out a backoff: try now
    }
  }

  // Removes a voice message's placeholder; false when there was none.
  function forgetVoice(id) {
    const v = state.voicePending.get(id);
    if (!v) return false;
    clearTimeout(v.timer);
    v.node.remove();
    state.voicePending.delete(id);
    return true;
  }

  // ---------------------------------------------------------------- start
  const api = {
    __widget: true,
    clientId,
    socket: null,
    reconnect,
    open: () => ui && setOpen(true, true),
    close: () => ui && setOpen(false, true),
  };
  window.Otklik = api;

  function init() {
    buildUI();
    // Unconfirmed messages from an earlier page: show them and send after hello.
    for (const m of loadPending()) {
      if (m.type === 'text' || m.type === 'choice') renderOwn(m);
    }
    const hasConversation = storedLastSeq() > 0 || loadPending().length > 0;
    if (ui.floating) setOpen(config.open === true, false);
    else setOpen(true, false);
    // A page that never opens the chat does not start a conversation.
    if (hasConversation || state.open) ensureStarted();

    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'visible' && state.started && !state.connected) {
        state.backoff = 500;
        connect();
      }
    });
    window.addEventListener('online', () => {
      if (state.started && !state.connected) {
        state.backoff = 500;
        connect();
      }
    });
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init, { once: true });
  else init();
})();
