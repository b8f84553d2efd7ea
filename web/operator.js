/*
 * Otklik operator console: the queue of conversations handed to people, taking,
 * replying, transferring and releasing them, and the callback / appointment lists.
 * Plain ES2020, no dependencies; all conversation text goes through textContent.
 */
(function () {
  'use strict';

  const API = '/api/v1/operator';
  const POLL_MS = 10000;

  const $ = (id) => document.getElementById(id);
  const ui = {
    error: $('error'),
    notice: $('notice'),
    loginView: $('login-view'),
    loginForm: $('login-form'),
    login: $('login'),
    password: $('password'),
    loginSubmit: document.querySelector('[data-testid="login-submit"]'),
    app: $('app-view'),
    conn: $('conn'),
    meName: $('me-name'),
    logout: $('logout'),
    queue: $('queue'),
    queueEmpty: $('queue-empty'),
    queueCount: $('queue-count'),
    queueRefresh: $('queue-refresh'),
    conv: $('conv'),
    convTitle: $('conv-title'),
    convEmpty: $('conv-empty'),
    convBody: $('conv-body'),
    convMeta: $('conv-meta'),
    history: $('history'),
    take: $('take'),
    release: $('release'),
    replyForm: $('reply-form'),
    replyText: $('reply-text'),
    replySend: $('reply-send'),
    transferForm: $('transfer-form'),
    transfers: $('transfers'),
    transferTo: $('transfer-to'),
    transferSend: $('transfer-send'),
    transferLimit: $('transfer-limit'),
    tagForm: $('tag-form'),
    tagIntent: $('tag-intent'),
    tagSend: $('tag-send'),
    callbacks: $('callbacks'),
    appointments: $('appointments'),
    cbRefresh: $('cb-refresh'),
    apRefresh: $('ap-refresh'),
  };

  const state = {
    me: null, // {login, name}
    items: [],
    fetchedAt: 0,
    selected: null, // session key
    operators: [],
    intents: [],
    rows: new Map(), // session -> <li>
    historySig: '',
    ws: null,
    wsBackoff: 500,
    wsTimer: null,
    pollTimer: null,
    tickTimer: null,
    refreshing: false,
    refreshAgain: false,
    refreshTimer: null,
    busy: false,
  };

  // ---------------------------------------------------------------- helpers
  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function api(method, path, body, opts) {
    const init = { method, credentials: 'same-origin', headers: { accept: 'application/json' } };
    if (body !== undefined) {
      init.headers['content-type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(API + path, init);
    } catch (e) {
      throw new ApiError(0, 'network', 'Нет связи с сервером. Проверьте подключение и попробуйте ещё раз.');
    }
    let data = null;
    const text = await res.text();
    if (text) {
      try {
        data = JSON.parse(text);
      } catch (e) {
        data = null;
      }
    }
    if (res.ok) return data || {};
    const err = data && data.error ? data.error : {};
    const message =
      typeof err.message === 'string' && err.message ? err.message : `Ошибка сервера (${res.status}). Попробуйте ещё раз.`;
    const e = new ApiError(res.status, err.code || 'http_' + res.status, message);
    if (res.status === 401 && !(opts && opts.loginCall)) {
      showLogin(message);
    }
    throw e;
  }

  function showError(msg) {
    // Replace the element's text: role="alert" announces the change.
    ui.error.textContent = msg || '';
  }
  let noticeTimer = null;
  function showNotice(msg) {
    clearTimeout(noticeTimer);
    ui.notice.textContent = msg || '';
    if (msg) noticeTimer = setTimeout(() => (ui.notice.textContent = ''), 6000);
  }

  function fmtWait(sec) {
    sec = Math.max(0, Math.floor(sec));
    const h = Math.floor(sec / 3600);
    const m = Math.floor((sec % 3600) / 60);
    const s = sec % 60;
    if (h) return `${h} ч ${m} мин`;
    if (m) return `${m} мин ${s} с`;
    return `${s} с`;
  }

  function fmtTime(at) {
    if (typeof at !== 'number' || !Number.isFinite(at)) return '';
    const d = new Date(at * 1000);
    const today = new Date();
    const sameDay = d.toDateString() === today.toDateString();
    return sameDay
      ? d.toLocaleTimeString('ru-RU', { hour: '2-digit', minute: '2-digit' })
      : d.toLocaleString('ru-RU', { day: '2-digit', month: '2-digit', hour: '2-digit', minute: '2-digit' });
  }

  function fmtCreated(v) {
    if (typeof v === 'number' && Number.isFinite(v)) {
      // seconds or milliseconds since the epoch
      const ms = v > 1e12 ? v : v * 1000;
      return new Date(ms).toLocaleString('ru-RU', { day: '2-digit', month: '2-digit', year: 'numeric', hour: '2-digit', minute: '2-digit' });
    }
    return v == null ? '' : String(v);
  }

  // An operator by the name people know them by, not the login.
  function operatorName(login, known) {
    if (state.me && login === state.me.login) return `${state.me.name || login} (Вы)`;
    const o = state.operators.find((x) => x.login === login);
    return (o && o.name) || known || login;
  }

  function whoLabel(who) {
    const w = String(who || '');
    if (w === 'client') return { cls: 'h-client', label: 'Клиент' };
    if (w === 'bot') return { cls: 'h-bot', label: 'Бот' };
    if (w.startsWith('operator:')) return { cls: 'h-operator', label: 'Оператор ' + operatorName(w.slice(9)) };
    // System lines name the operator in their own text.
    if (w.startsWith('system')) return { cls: 'h-system', label: 'Система' };
    return { cls: 'h-system', label: w };
  }

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function convPath(session, action) {
    return `/conversations/${encodeURIComponent(session)}/${action}`;
  }

  // Seconds the client has waited; once an operator took the conversation,
  // the wait it had (fixed), or null when it is not known.
  function waitingNow(item) {
    if (item.operator) return Number.isFinite(item.waiting_seconds) ? item.waiting_seconds : null;
    return (item.waiting_seconds || 0) + (Date.now() - state.fetchedAt) / 1000;
  }

  function holderText(item) {
    if (!item.operator) return 'Ждёт оператора';
    if (state.me && item.operator === state.me.login) return 'В работе у Вас';
    return 'В работе: ' + operatorName(item.operator, item.operator_name);
  }

  function currentItem() {
    return state.items.find((i) => i.session === state.selected) || null;
  }

  // ---------------------------------------------------------------- views
  function showLogin(message) {
    stopLive();
    state.me = null;
    state.items = [];
    state.selected = null;
    state.rows.clear();
    ui.queue.textContent = '';
    ui.app.hidden = true;
    ui.loginView.hidden = false;
    document.title = 'Отклик — вход для операторов';
    if (message) showError(message);
    ui.password.value = '';
    if (!ui.login.value) ui.login.focus();
    else ui.password.focus();
  }

  function showApp() {
    ui.loginView.hidden = true;
    ui.app.hidden = false;
    ui.meName.textContent = state.me.name || state.me.login;
    document.title = 'Отклик — пульт оператора';
    renderConversation();
    startLive();
    loadOperators();
    loadIntents();
    refreshQueue();
    loadCallbacks();
    loadAppointments();
  }

  // ---------------------------------------------------------------- queue
  function scheduleRefresh() {
    clearTimeout(state.refreshTimer);
    state.refreshTimer = setTimeout(refreshQueue, 80);
  }

  async function refreshQueue() {
    if (!state.me) return;
    if (state.refreshing) {
      state.refreshAgain = true;
      return;
    }
    state.refreshing = true;
    try {
      const data = await api('GET', '/queue');
      state.items = Array.isArray(data.items) ? data.items : [];
      state.fetchedAt = Date.now();
      renderQueue();
      renderConversation();
    } catch (e) {
      if (e.status !== 401) setConn(e.status === 0 ? 'Нет связи с сервером' : '');
    } finally {
      state.refreshing = false;
      if (state.refreshAgain) {
        state.refreshAgain = false;
        refreshQueue();
      }
    }
  }

  function rowFor(item) {
    let li = state.rows.get(item.session);
    if (!li) {
      li = el('li');
      const b = el('button');
      b.type = 'button';
      b.dataset.testid = 'queue-item';
      b.dataset.session = item.session;
      b.setAttribute('data-testid', 'queue-item');
      b.setAttribute('data-session', item.session);
      const top = el('span', 'q-top');
      top.append(el('span', 'q-title'), el('span', 'q-wait'));
      b.append(top, el('span', 'q-sub q-intent'), el('span', 'q-sub q-holder'));
      b.addEventListener('click', () => select(item.session));
      li.appendChild(b);
      state.rows.set(item.session, li);
    }
    return li;
  }

  function fillRow(li, item) {
    const b = li.firstChild;
    b.querySelector('.q-title').textContent = item.title || item.channel_label || 'Разговор';
    // The clock runs only while the conversation waits.
    b.querySelector('.q-wait').textContent = item.operator ? '' : fmtWait(waitingNow(item));
    b.querySelector('.q-intent').textContent = 'Тема: ' + (item.topic || 'не определена');
    const holder = b.querySelector('.q-holder');
    const mine = state.me && item.operator === state.me.login;
    holder.textContent = holderText(item);
    holder.classList.toggle('q-mine', !!mine);
    b.setAttribute('aria-current', item.session === state.selected ? 'true' : 'false');
  }

  function renderQueue() {
    const seen = new Set();
    state.items.forEach((item, i) => {
      seen.add(item.session);
      const li = rowFor(item);
      fillRow(li, item);
      // Move only when the order changed: moving a focused node would blur it.
      if (ui.queue.children[i] !== li) ui.queue.insertBefore(li, ui.queue.children[i] || null);
    });
    for (const [session, li] of state.rows) {
      if (!seen.has(session)) {
        const hadFocus = li.contains(document.activeElement);
        li.remove();
        state.rows.delete(session);
        if (hadFocus) (ui.queue.querySelector('button') || ui.queueRefresh).focus();
      }
    }
    const waiting = state.items.filter((i) => !i.operator).length;
    ui.queueEmpty.hidden = state.items.length > 0;
    ui.queueCount.textContent = state.items.length ? `(всего ${state.items.length}, ждут ${waiting})` : '';
  }

  function tick() {
    for (const item of state.items) {
      if (item.operator) continue;
      const li = state.rows.get(item.session);
      if (li) li.querySelector('.q-wait').textContent = fmtWait(waitingNow(item));
    }
    const item = currentItem();
    const w = ui.convMeta.querySelector('[data-field="wait"]');
    if (item && w) w.textContent = waitText(item);
  }

  function waitText(item) {
    const w = waitingNow(item);
    if (!item.operator) return fmtWait(w);
    return w === null ? 'до подключения оператора' : `${fmtWait(w)} до подключения оператора`;
  }

  function select(session) {
    state.selected = session;
    state.historySig = '';
    showError('');
    for (const item of state.items) {
      const li = state.rows.get(item.session);
      if (li) li.firstChild.setAttribute('aria-current', item.session === session ? 'true' : 'false');
    }
    renderConversation();
  }

  // ---------------------------------------------------------------- conversation
  function metaRow(term, value, field) {
    const dt = el('dt', null, term);
    const dd = el('dd', null, value);
    if (field) dd.dataset.field = field;
    ui.convMeta.append(dt, dd);
  }

  function renderConversation() {
    const item = currentItem();
    if (!item) {
      ui.convBody.hidden = true;
      ui.convEmpty.hidden = false;
      ui.convTitle.textContent = 'Разговор';
      delete ui.conv.dataset.session;
      ui.convEmpty.textContent = state.selected ? 'Этого разговора больше нет в очереди.' : 'Выберите разговор в очереди.';
      return;
    }
    ui.convEmpty.hidden = true;
    ui.convBody.hidden = false;
    // A short label for people; the full key stays in data-session for the actions.
    ui.convTitle.textContent = 'Разговор: ' + (item.title || item.channel_label || '—');
    ui.conv.dataset.session = item.session;

    ui.convMeta.textContent = '';
    metaRow('Канал', item.channel_label || item.channel || '—');
    metaRow('Сегмент', item.segment_label || item.segment || '—');
    metaRow('Тема', item.topic || 'не определена');
    metaRow('Ожидание', waitText(item), 'wait');
    metaRow('Ведёт', item.operator ? operatorName(item.operator, item.operator_name) : 'никто');

    // History: re-rendered only when it changed, to keep the reader's scroll position.
    const history = Array.isArray(item.history) ? item.history : [];
    const sig = item.session + '|' + history.length + '|' + JSON.stringify(history[history.length - 1] || null);
    if (sig !== state.historySig) {
      const sameSession = state.historySig.startsWith(item.session + '|');
      state.historySig = sig;
      const atEnd = ui.history.scrollHeight - ui.history.scrollTop - ui.history.clientHeight < 60;
      ui.history.textContent = '';
      for (const h of history) {
        const w = whoLabel(h.who);
        const li = el('li', w.cls);
        li.dataset.who = String(h.who || '');
        li.setAttribute('data-testid', 'history-entry');
        li.append(el('span', 'h-who', w.label), el('span', 'h-time', fmtTime(h.at)), el('span', 'h-text', h.text));
        ui.history.appendChild(li);
      }
      if (!history.length) ui.history.appendChild(el('li', 'h-system', 'История пуста.'));
      // Follow new messages unless the operator scrolled up to read older ones.
      if (atEnd || !sameSession) ui.history.scrollTop = ui.history.scrollHeight;
    }

    const mine = !!(state.me && item.operator === state.me.login);
    const free = !item.operator;
    const max = Number.isFinite(item.max_transfers) ? item.max_transfers : 2;
    const transfers = Number.isFinite(item.transfers) ? item.transfers : 0;
    const limit = transfers >= max;

    ui.take.disabled = state.busy || !free;
    ui.take.textContent = mine ? 'В работе у Вас' : free ? 'Взять в работу' : 'Взят другим оператором';
    ui.release.disabled = state.busy || !mine;
    ui.replyText.disabled = !mine;
    ui.replySend.disabled = state.busy || !mine;
    ui.replyText.placeholder = mine
      ? 'Ответ клиенту (Enter — отправить, Shift+Enter — новая строка)'
      : 'Чтобы ответить, возьмите разговор в работу';

    ui.transfers.textContent = `Передач: ${transfers} из ${max}`;
    ui.transferLimit.hidden = !limit;
    fillOperators();
    const canTransfer = mine && !limit && ui.transferTo.options.length > 0;
    ui.transferTo.disabled = !canTransfer;
    ui.transferSend.disabled = state.busy || !canTransfer;
    // The topic can be tagged by the operator holding the conversation.
    ui.tagIntent.disabled = !mine || !state.intents.length;
    ui.tagSend.disabled = state.busy || ui.tagIntent.disabled;
  }

  function fillOperators() {
    const others = state.operators.filter((o) => !state.me || o.login !== state.me.login);
    const want = others.map((o) => o.login).join('\n');
    const have = Array.from(ui.transferTo.options, (o) => o.value).join('\n');
    if (want === have) return;
    const keep = ui.transferTo.value;
    ui.transferTo.textContent = '';
    for (const o of others) {
      const opt = document.createElement('option');
      opt.value = o.login;
      opt.textContent = o.name ? `${o.name} (${o.login})` : o.login;
      ui.transferTo.appendChild(opt);
    }
    if (others.some((o) => o.login === keep)) ui.transferTo.value = keep;
  }

  async function act(fn) {
    if (state.busy) return;
    state.busy = true;
    showError('');
    renderConversation();
    try {
      await fn();
    } catch (e) {
      if (e.status !== 401) showError(e.message);
    } finally {
      state.busy = false;
      renderConversation();
    }
  }

  ui.take.addEventListener('click', () =>
    act(async () => {
      const session = state.selected;
      const res = await api('POST', convPath(session, 'take'));
      showNotice(
        res.client_told === false
          ? 'Разговор взят в работу. Клиент узнает об этом, когда мессенджер снова ответит.'
          : 'Разговор взят в работу. Клиенту сообщили, что Вы подключились.'
      );
      await refreshQueue();
      ui.replyText.focus();
    })
  );

  async function sendReply() {
    const text = ui.replyText.value;
    if (!text.trim()) {
      showError('Ответ пустой: напишите текст сообщения.');
      ui.replyText.focus();
      return;
    }
    await act(async () => {
      const res = await api('POST', convPath(state.selected, 'reply'), { text });
      ui.replyText.value = '';
      if (res.delivered === false && res.notice) showNotice(res.notice);
      await refreshQueue();
    });
    ui.replyText.focus();
  }
  ui.replyForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    sendReply();
  });
  ui.replyText.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing && ev.keyCode !== 229) {
      ev.preventDefault();
      sendReply();
    }
  });

  ui.transferForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const to = ui.transferTo.value;
    if (!to) return;
    act(async () => {
      const res = await api('POST', convPath(state.selected, 'transfer'), { to });
      const n = res && Number.isFinite(res.transfers) ? `, передач: ${res.transfers}` : '';
      showNotice(`Разговор передан: ${operatorName(to)}${n}.`);
      await refreshQueue();
    });
  });

  ui.tagForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const intent = ui.tagIntent.value;
    if (!intent) return;
    act(async () => {
      await api('POST', convPath(state.selected, 'tag'), { intent });
      const it = state.intents.find((i) => i.id === intent);
      showNotice(`Тема отмечена: ${it ? it.title : intent}. Спасибо, это поможет обучить бота.`);
    });
  });

  ui.release.addEventListener('click', () =>
    act(async () => {
      const res = await api('POST', convPath(state.selected, 'release'));
      showNotice(
        res.delivered === false && res.notice ? `Разговор возвращён боту. ${res.notice}` : 'Разговор возвращён боту.'
      );
      await refreshQueue();
    })
  );

  ui.queueRefresh.addEventListener('click', () => refreshQueue());

  // ---------------------------------------------------------------- side lists
  async function loadIntents() {
    try {
      const data = await api('GET', '/intents');
      state.intents = Array.isArray(data.intents) ? data.intents : [];
      ui.tagIntent.textContent = '';
      for (const i of state.intents) {
        const opt = document.createElement('option');
        opt.value = i.id;
        opt.textContent = i.title;
        ui.tagIntent.appendChild(opt);
      }
      renderConversation();
    } catch (e) {
      if (e.status !== 401) showError(e.message);
    }
  }

  async function loadOperators() {
    try {
      const data = await api('GET', '/operators');
      state.operators = Array.isArray(data.items) ? data.items : [];
      renderQueue();
      renderConversation();
    } catch (e) {
      if (e.status !== 401) showError(e.message);
    }
  }

  function fillTable(tbody, items, cols, emptyText) {
    tbody.textContent = '';
    if (!items.length) {
      const tr = el('tr');
      const td = el('td', 'empty', emptyText);
      td.colSpan = cols.length;
      tr.appendChild(td);
      tbody.appendChild(tr);
      return;
    }
    for (const it of items) {
      const tr = el('tr');
      for (const c of cols) tr.appendChild(el('td', null, typeof c === 'function' ? c(it) : it[c] == null ? '' : it[c]));
      tbody.appendChild(tr);
    }
  }

  async function loadCallbacks() {
    try {
      const data = await api('GET', '/callbacks');
      const items = Array.isArray(data.items) ? data.items : [];
      fillTable(ui.callbacks, items, ['id', 'user', 'phone', 'preferred_time', 'topic', (it) => fmtCreated(it.created)], 'Заявок нет.');
    } catch (e) {
      if (e.status !== 401) showError(e.message);
    }
  }

  async function loadAppointments() {
    try {
      const data = await api('GET', '/appointments');
      const items = Array.isArray(data.items) ? data.items : [];
      fillTable(ui.appointments, items, ['id', 'user', 'service', 'office', 'date', 'time', 'name'], 'Записей нет.');
    } catch (e) {
      if (e.status !== 401) showError(e.message);
    }
  }
  ui.cbRefresh.addEventListener('click', loadCallbacks);
  ui.apRefresh.addEventListener('click', loadAppointments);

  // ---------------------------------------------------------------- live updates
  function setConn(text) {
    ui.conn.textContent = text || '';
  }

  function startLive() {
    stopLive();
    connectWs();
    state.pollTimer = setInterval(refreshQueue, POLL_MS);
    state.tickTimer = setInterval(tick, 1000);
  }

  function stopLive() {
    clearInterval(state.pollTimer);
    clearInterval(state.tickTimer);
    clearTimeout(state.wsTimer);
    state.pollTimer = state.tickTimer = state.wsTimer = null;
    const ws = state.ws;
    state.ws = null;
    if (ws) {
      try {
        ws.close();
      } catch (e) {
        /* ignore */
      }
    }
    setConn('');
  }

  function connectWs() {
    clearTimeout(state.wsTimer);
    state.wsTimer = null;
    if (!state.me) return;
    const old = state.ws;
    if (old && (old.readyState === WebSocket.OPEN || old.readyState === WebSocket.CONNECTING)) return;
    const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws/operator';
    let ws;
    try {
      ws = new WebSocket(url);
    } catch (e) {
      wsDropped(null);
      return;
    }
    state.ws = ws;
    window.OtklikOperator.socket = ws;
    ws.addEventListener('open', () => {
      if (ws !== state.ws) return;
      state.wsBackoff = 500;
      setConn('');
      refreshQueue(); // pushes may have been missed while disconnected
    });
    ws.addEventListener('message', (ev) => {
      if (ws !== state.ws) return;
      let msg = null;
      try {
        msg = JSON.parse(ev.data);
      } catch (e) {
        return;
      }
      if (msg && msg.type === 'queue') scheduleRefresh();
    });
    ws.addEventListener('close', () => {
      if (ws !== state.ws) return;
      wsDropped(ws);
    });
  }

  function wsDropped(ws) {
    if (ws && state.ws === ws) state.ws = null;
    if (!state.me) return;
    setConn('Нет связи для обновлений, переподключаюсь…');
    clearTimeout(state.wsTimer);
    state.wsTimer = setTimeout(() => {
      // A dropped socket may mean the session ended: the API call shows the login form.
      refreshQueue();
      connectWs();
    }, state.wsBackoff);
    state.wsBackoff = Math.min(state.wsBackoff * 2, 5000);
  }

  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible' && state.me) {
      state.wsBackoff = 500;
      connectWs();
      refreshQueue();
    }
  });

  // ---------------------------------------------------------------- login / logout
  ui.loginForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const login = ui.login.value.trim();
    const password = ui.password.value;
    if (!login || !password) {
      showError('Введите логин и пароль.');
      (login ? ui.password : ui.login).focus();
      return;
    }
    ui.loginSubmit.disabled = true;
    showError('');
    try {
      const me = await api('POST', '/login', { login, password }, { loginCall: true });
      state.me = { login: me.login || login, name: me.name || me.login || login };
      ui.password.value = '';
      showApp();
    } catch (e) {
      showError(e.message);
      ui.password.value = '';
      ui.password.focus();
    } finally {
      ui.loginSubmit.disabled = false;
    }
  });

  ui.logout.addEventListener('click', async () => {
    try {
      await api('POST', '/logout', undefined, { loginCall: true });
    } catch (e) {
      /* logged out anyway */
    }
    showError('');
    showLogin();
  });

  window.OtklikOperator = { socket: null, refresh: refreshQueue };

  (async function start() {
    try {
      const me = await api('GET', '/me', undefined, { loginCall: true });
      state.me = { login: me.login, name: me.name || me.login };
      showApp();
    } catch (e) {
      if (e.status === 401) showLogin();
      else showLogin(e.message);
    }
  })();
})();
