/* The trainers' review page: proposals from the anonymised log (new
 * examples for intents, new intents from clusters of unanswered questions),
 * the trainer's verdict on each, and applying the accepted ones with the
 * held-out score before and after. Signs in through the operators' API. */
(function () {
  'use strict';
  const $ = (id) => document.getElementById(id);
  const ui = {
    error: $('error'), notice: $('notice'), loginView: $('login-view'), loginForm: $('login-form'),
    login: $('login'), password: $('password'), app: $('app-view'), me: $('me-name'), logout: $('logout'),
    suggest: $('suggest'), apply: $('apply'), count: $('count'), result: $('result'), list: $('list'), empty: $('empty'),
  };
  const state = { items: [], intents: [], busy: false };

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function showError(m) { ui.error.textContent = m || ''; }
  function showNotice(m) { ui.notice.textContent = m || ''; }

  async function api(method, path, body) {
    const init = { method, credentials: 'same-origin', headers: { accept: 'application/json' } };
    if (body !== undefined) { init.headers['content-type'] = 'application/json'; init.body = JSON.stringify(body); }
    let res;
    try { res = await fetch(path, init); } catch (e) {
      throw Object.assign(new Error('Нет связи с сервером. Проверьте подключение и попробуйте ещё раз.'), { status: 0 });
    }
    const text = await res.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
    if (res.ok) return data || {};
    const msg = data && data.error && data.error.message ? data.error.message : `Ошибка сервера (${res.status}). Попробуйте ещё раз.`;
    // A refused sign-in is told; any other 401 means the sign-in expired.
    const signingIn = path === '/api/v1/operator/login';
    if (res.status === 401 && !signingIn) showLogin();
    throw Object.assign(new Error(msg), { status: signingIn ? 400 : res.status });
  }

  async function act(fn) {
    if (state.busy) return;
    state.busy = true;
    ui.suggest.disabled = ui.apply.disabled = true;
    showError('');
    try { await fn(); } catch (e) { if (e.status !== 401) showError(e.message); }
    finally { state.busy = false; ui.suggest.disabled = false; render(); }
  }

  const STATUS = { pending: 'ждёт решения', accept: 'принято', reject: 'отклонено' };

  function card(p) {
    const li = el('li', 'card ' + p.status);
    li.setAttribute('data-testid', 'proposal');
    li.dataset.id = p.id;
    li.dataset.kind = p.kind;
    const isNew = p.kind === 'intent';
    li.appendChild(el('h2', '', isNew ? 'Новая тема' : 'Новый пример для темы'));
    li.appendChild(el('p', 'why', `${p.why}. Обращений: ${p.count}. Статус: `));
    li.lastChild.appendChild(el('span', 'status', STATUS[p.status] || p.status));
    let intent;
    if (isNew) {
      const idLabel = el('label', '', 'Идентификатор темы (латиницей, например pet_allowance)');
      intent = el('input');
      intent.value = p.intent.startsWith('new_') ? '' : p.intent;
      intent.placeholder = 'pet_allowance';
      idLabel.htmlFor = intent.id = 'intent-' + p.id;
      li.append(idLabel, intent);
      const tLabel = el('label', '', 'Название темы');
      const title = el('input');
      title.value = p.title || '';
      tLabel.htmlFor = title.id = 'title-' + p.id;
      title.dataset.field = 'title';
      li.append(tLabel, title);
      const aLabel = el('label', '', 'Ответ');
      const answer = el('textarea');
      answer.value = p.answer || '';
      aLabel.htmlFor = answer.id = 'answer-' + p.id;
      answer.dataset.field = 'answer';
      li.append(aLabel, answer);
    } else {
      const iLabel = el('label', '', 'Тема');
      intent = el('select');
      for (const i of state.intents) {
        const o = el('option', '', i.title);
        o.value = i.id;
        intent.appendChild(o);
      }
      intent.value = p.intent;
      iLabel.htmlFor = intent.id = 'intent-' + p.id;
      li.append(iLabel, intent);
    }
    intent.dataset.field = 'intent';
    const xLabel = el('label', '', isNew ? 'Примеры (по одному в строке)' : 'Пример');
    const texts = el('textarea');
    texts.value = (p.texts || []).join('\n');
    xLabel.htmlFor = texts.id = 'texts-' + p.id;
    texts.dataset.field = 'texts';
    texts.setAttribute('data-testid', 'proposal-texts');
    li.append(xLabel, texts);
    const actions = el('div', 'actions');
    const accept = el('button', '', 'Принять');
    accept.type = 'button';
    accept.setAttribute('data-testid', 'accept');
    const reject = el('button', 'secondary', 'Отклонить');
    reject.type = 'button';
    reject.setAttribute('data-testid', 'reject');
    actions.append(accept, reject);
    li.appendChild(actions);
    const send = (status) => act(async () => {
      const body = { status, texts: texts.value.split('\n') };
      const v = intent.value.trim();
      if (v) body.intent = v;
      if (isNew) {
        body.title = li.querySelector('[data-field="title"]').value;
        body.answer = li.querySelector('[data-field="answer"]').value;
      }
      const updated = await api('POST', '/api/v1/trainer/proposals/' + encodeURIComponent(p.id), body);
      state.items = state.items.map((x) => (x.id === p.id ? updated : x));
      showNotice(status === 'accept' ? 'Предложение принято.' : 'Предложение отклонено.');
    });
    accept.addEventListener('click', () => send('accept'));
    reject.addEventListener('click', () => send('reject'));
    return li;
  }

  function render() {
    ui.list.textContent = '';
    for (const p of state.items) ui.list.appendChild(card(p));
    ui.empty.hidden = state.items.length > 0;
    const accepted = state.items.filter((p) => p.status === 'accept').length;
    ui.count.textContent = `Предложений: ${state.items.length}, принято: ${accepted}`;
    ui.apply.disabled = state.busy || accepted === 0;
  }

  function pct(x) { return x === null || x === undefined ? '—' : (x * 100).toFixed(1) + ' %'; }

  function showResult(r) {
    ui.result.textContent = '';
    const a = r.applied || {};
    ui.result.appendChild(el('p', '', `Добавлено примеров: ${a.examples || 0}, новых тем: ${a.intents || 0}. Бот уже работает с новыми данными.`));
    if (r.tuned) {
      ui.result.appendChild(el('p', '', `Модель дообучена на ${r.tuned.examples} примерах за ${Math.round(r.tuned.seconds)} с.`));
    }
    if (r.before && r.after) {
      const t = el('table');
      t.setAttribute('data-testid', 'gain');
      const head = el('tr');
      head.append(el('th', '', 'Показатель'), el('th', '', 'До'), el('th', '', 'После'));
      t.appendChild(head);
      const rows = [['Точность (первая тема)', 'top1'], ['Точность (три темы)', 'top3']];
      if (r.before.out_of_scope > 0) rows.push(['Вопросы не по теме отклонены', 'oos_rejected']);
      ui.result.appendChild(el('p', '', `Отложенная выборка: ${r.after.items} вопросов, на которых бот не обучается.`));
      for (const [name, k] of rows) {
        const tr = el('tr');
        tr.append(el('td', '', name), el('td', '', pct(r.before[k])), el('td', '', pct(r.after[k])));
        t.appendChild(tr);
      }
      ui.result.appendChild(t);
    }
  }

  async function load() {
    const [p, i] = await Promise.all([api('GET', '/api/v1/trainer/proposals'), api('GET', '/api/v1/trainer/intents')]);
    state.items = p.items || [];
    state.intents = i.intents || [];
  }

  ui.suggest.addEventListener('click', () => act(async () => {
    showNotice('Ищу предложения в журнале…');
    const p = await api('POST', '/api/v1/trainer/suggest');
    state.items = p.items || [];
    showNotice(`Готово: предложений ${state.items.length}.`);
  }));
  ui.apply.addEventListener('click', () => act(async () => {
    showNotice('Записываю изменения, дообучаю модель и проверяю точность. Это займёт несколько минут…');
    const r = await api('POST', '/api/v1/trainer/apply');
    showResult(r);
    await load();
    showNotice('Изменения применены.');
  }));

  function showLogin() { ui.app.hidden = true; ui.loginView.hidden = false; ui.login.focus(); }
  async function showApp(me) {
    ui.loginView.hidden = true;
    ui.app.hidden = false;
    ui.me.textContent = me.name || me.login;
    await load();
    render();
  }

  ui.loginForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    act(async () => {
      const me = await api('POST', '/api/v1/operator/login', { login: ui.login.value, password: ui.password.value });
      ui.password.value = '';
      await showApp(me);
    });
  });
  ui.logout.addEventListener('click', () => act(async () => { await api('POST', '/api/v1/operator/logout'); showLogin(); }));

  api('GET', '/api/v1/operator/me').then(showApp).catch(() => showLogin());
})();
