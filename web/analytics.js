// The analysts' dashboard: sign-in (the console's cookie), the indicators of
// a period with their star levels, the trend of one indicator as an SVG
// chart, a breakdown and the worst topics. No external scripts or fonts.
(function () {
  'use strict';
  const $ = (id) => document.getElementById(id);
  const ui = {
    error: $('error'),
    loginView: $('login-view'),
    loginForm: $('login-form'),
    login: $('login'),
    password: $('password'),
    app: $('app-view'),
    meName: $('me-name'),
    logout: $('logout'),
    filters: $('filters'),
    since: $('since'),
    until: $('until'),
    by: $('by'),
    period: $('period'),
    summary: $('summary'),
    cards: $('cards'),
    chartOf: $('chart-of'),
    chart: $('chart'),
    groupsBox: $('groups-box'),
    groups: $('groups'),
    main: document.querySelector('#app-view main'),
  };
  const SVG = 'http://www.w3.org/2000/svg';

  // The indicators in the order shown: title, kind of value, what n counts.
  const INDICATORS = [
    ['resolution', 'Вопрос решён', 'share', 'Ответов на «Ваш вопрос решён?»', 'Решён'],
    ['easy_share', 'Решить было легко', 'share', 'Оценок лёгкости', 'Легко'],
    ['ease', 'Средняя оценка лёгкости (1 — легко, 4 — сложно)', 'mean', 'Оценок лёгкости', 'Лёгкость, 1–4'],
    ['satisfaction', 'Довольны ответами (от 1 до 5)', 'mean', 'Оценок', 'Довольны, 1–5'],
    ['nps', 'Готовы рекомендовать (NPS)', 'nps', 'Оценок', 'NPS'],
    ['repeat', 'Повторные обращения', 'share', 'Обращений', 'Повторные'],
    ['handoff', 'Переведены на оператора', 'share', 'Разговоров', 'К оператору'],
    ['fallback', 'Вопрос не понят', 'share', 'Разговоров', 'Не понят'],
    ['transfer', 'Переданы другому оператору', 'share', 'Разговоров', 'Переданы'],
    ['answer_p50_ms', 'Время ответа: половина ответов быстрее', 'ms', 'Ответов', 'Ответ, медиана'],
    ['answer_p90_ms', 'Время ответа: 9 из 10 ответов быстрее', 'ms', 'Ответов', 'Ответ, 9 из 10'],
  ];
  const DIMENSIONS = { channel: 'Канал', segment: 'Группа клиентов', intent: 'Тема', situation: 'Жизненная ситуация' };
  const CHANNELS = { web: 'Веб-чат', telegram: 'Telegram', voice: 'Телефон', api: 'API' };
  const SEGMENTS = {
    universal: 'Без профиля',
    senior: 'Пожилые люди',
    family: 'Семьи с детьми',
    disability: 'Люди с инвалидностью',
    jobseeker: 'Ищут работу',
  };
  const SITUATIONS = {
    old_age: 'Пенсия и старость',
    family_children: 'Семья и дети',
    disability: 'Инвалидность',
    work_income: 'Работа и доход',
    housing: 'Жильё',
    documents: 'Документы',
    taxes: 'Налоги',
    service: 'Приём и обслуживание',
    conversation: 'Общение с помощником',
  };
  let data = null;

  const num = (v, digits) =>
    v.toLocaleString('ru-RU', { minimumFractionDigits: digits, maximumFractionDigits: digits });

  /** The Russian plural form for n: one (1, 21), few (2–4, 22–24), many. */
  function plural(n, one, few, many) {
    const d = n % 10, h = n % 100;
    if (d === 1 && h !== 11) return one;
    if (d >= 2 && d <= 4 && (h < 12 || h > 14)) return few;
    return many;
  }

  /** 2026-12-04 → 04.12.2026 */
  function ruDate(d) {
    const [yy, mm, dd] = String(d).split('-');
    return `${dd}.${mm}.${yy}`;
  }

  function fmt(kind, v) {
    if (v === null || v === undefined) return '—';
    switch (kind) {
      case 'share':
        return num(v * 100, 1) + ' %';
      case 'mean':
        return num(v, 2);
      case 'nps':
        return (v > 0 ? '+' : v < 0 ? '−' : '') + num(Math.abs(v), 0);
      case 'ms':
        return v >= 1000 ? num(v / 1000, 1) + ' с' : num(v, 0) + ' мс';
      default:
        return String(v);
    }
  }

  function label(key) {
    if (key === '-') return 'Не определено';
    const by = data && data.by;
    if (by === 'channel') return CHANNELS[key] || key;
    if (by === 'segment') return SEGMENTS[key] || key;
    if (by === 'situation') return SITUATIONS[key] || key;
    return topic(key);
  }

  function topic(id) {
    if (id === '-') return 'Тема не определена';
    return (data && data.titles && data.titles[id]) || id;
  }

  async function api(path, method, body) {
    const init = { method: method || 'GET', credentials: 'same-origin', headers: { accept: 'application/json' } };
    if (body !== undefined) {
      init.headers['content-type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch (e) {
      throw new Error('Нет связи с сервером. Проверьте подключение и попробуйте ещё раз.');
    }
    let json = null;
    try {
      json = await res.json();
    } catch (e) {
      json = null;
    }
    if (res.ok) return json || {};
    const err = (json && json.error) || {};
    const e = new Error(err.message || `Ошибка сервера (${res.status}). Попробуйте ещё раз.`);
    e.status = res.status;
    throw e;
  }

  function showError(msg) {
    ui.error.textContent = msg || '';
  }

  function showLogin(msg) {
    ui.app.hidden = true;
    ui.loginView.hidden = false;
    showError(msg || '');
    ui.login.focus();
  }

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function stars(n) {
    const s = el('span', 'c-stars', '★'.repeat(n) + '☆'.repeat(5 - n));
    s.setAttribute('role', 'img');
    s.setAttribute('aria-label', `Уровень ${n} из 5`);
    s.dataset.stars = String(n);
    return s;
  }

  function renderCards() {
    ui.cards.replaceChildren();
    for (const [key, title, kind, counts] of INDICATORS) {
      const i = data.total[key];
      const li = el('li');
      li.dataset.indicator = key;
      li.append(el('span', 'c-name', title));
      const v = el('span', 'c-value', fmt(kind, i.value));
      v.dataset.testid = 'value';
      li.append(v);
      if (i.stars) li.append(stars(i.stars));
      li.append(el('span', 'c-n', i.n ? `${counts}: ${num(i.n, 0)}` : 'Пока нет данных'));
      ui.cards.append(li);
    }
  }

  function svg(tag, attrs, text) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function renderChart() {
    const key = ui.chartOf.value || 'resolution';
    const [, title, kind] = INDICATORS.find((x) => x[0] === key);
    const points = data.trend
      .map((g) => ({ day: g.key, v: g[key].value }))
      .filter((p) => p.v !== null && p.v !== undefined);
    ui.chart.replaceChildren();
    if (!points.length) {
      ui.chart.append(el('p', 'empty', 'За этот период нет данных для графика.'));
      return;
    }
    const W = Math.max(320, Math.round(ui.chart.clientWidth || 760));
    const H = W < 500 ? 220 : 260, L = 64, R = 44, T = 24, B = 44;
    let lo = Math.min(...points.map((p) => p.v));
    let hi = Math.max(...points.map((p) => p.v));
    if (kind === 'share') { lo = 0; hi = Math.max(hi, 0.0001); hi = Math.min(1, hi * 1.1) || 1; }
    if (kind === 'nps') { lo = Math.min(lo, 0); hi = Math.max(hi, 0); }
    if (kind === 'mean') { lo = 1; hi = key === 'ease' ? 4 : 5; }
    if (kind === 'ms') { lo = 0; hi = hi * 1.1 || 1; }
    if (hi === lo) { hi = lo + 1; }
    const x = (i) => L + (points.length === 1 ? (W - L - R) / 2 : (i * (W - L - R)) / (points.length - 1));
    const y = (v) => T + ((hi - v) * (H - T - B)) / (hi - lo);
    const s = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-labelledby': 'chart-svg-title' });
    s.append(svg('title', { id: 'chart-svg-title' }, `${title}: ${points.map((p) => `${p.day} — ${fmt(kind, p.v)}`).join('; ')}`));
    for (let k = 0; k <= 4; k++) {
      const v = lo + ((hi - lo) * k) / 4;
      s.append(svg('line', { class: 'grid', x1: L, x2: W - R, y1: y(v), y2: y(v) }));
      s.append(svg('text', { x: L - 6, y: y(v) + 4, 'text-anchor': 'end' }, fmt(kind, v)));
    }
    s.append(svg('line', { class: 'axis', x1: L, x2: W - R, y1: H - B, y2: H - B }));
    const every = Math.max(1, Math.ceil(points.length / Math.max(2, Math.floor((W - L - R) / 70))));
    points.forEach((p, i) => {
      if (i % every === 0 || i === points.length - 1) {
        s.append(svg('text', { x: x(i), y: H - B + 18, 'text-anchor': 'middle' }, shortDay(p.day)));
      }
    });
    if (points.length > 1) {
      s.append(svg('polyline', { class: 'line', points: points.map((p, i) => `${x(i)},${y(p.v)}`).join(' ') }));
    }
    points.forEach((p, i) => {
      const c = svg('circle', { class: 'dot', cx: x(i), cy: y(p.v), r: 4, 'data-day': p.day, 'data-value': p.v });
      c.append(svg('title', {}, `${p.day}: ${fmt(kind, p.v)}`));
      s.append(c);
      if (points.length <= Math.floor((W - L - R) / 60)) {
        s.append(svg('text', { class: 'val', x: x(i), y: y(p.v) - 9, 'text-anchor': 'middle' }, fmt(kind, p.v)));
      }
    });
    ui.chart.append(s);
  }

  function shortDay(d) {
    const [yy, mm, dd] = d.split('-');
    return data.period === 'month' ? `${mm}.${yy}` : `${dd}.${mm}`;
  }

  function renderGroups() {
    ui.groupsBox.hidden = !data.by;
    ui.groups.replaceChildren();
    if (!data.by) return;
    const head = el('tr');
    head.append(el('th', '', DIMENSIONS[data.by] || ''));
    head.append(el('th', 'num', 'Разговоров'));
    for (const [, title, , , short] of INDICATORS) {
      const th = el('th', 'num', short);
      th.title = title;
      head.append(th);
    }
    const thead = el('thead');
    thead.append(head);
    const tbody = el('tbody');
    for (const g of data.groups) {
      const tr = el('tr');
      tr.dataset.key = g.key;
      tr.append(el('th', '', label(g.key)));
      tr.append(el('td', 'num', num(g.conversations, 0)));
      for (const [key, , kind] of INDICATORS) {
        const i = g[key];
        const td = el('td', 'num', fmt(kind, i.value) + (i.stars ? ` ${'★'.repeat(i.stars)}` : ''));
        if (i.stars) td.title = `Уровень ${i.stars} из 5`;
        tr.append(td);
      }
      tbody.append(tr);
    }
    ui.groups.append(thead, tbody);
  }

  function renderWorst() {
    const fill = (id, items, what) => {
      const ol = $(id);
      ol.replaceChildren();
      if (!items.length) {
        ol.append(el('li', 'empty', 'Таких случаев нет.'));
        return;
      }
      for (const c of items) {
        const li = el('li', '', `${topic(c.intent)}: ${num(c.count, 0)} ${plural(c.count, ...what)}`);
        li.dataset.intent = c.intent;
        ol.append(li);
      }
    };
    const times = ['раз', 'раза', 'раз'];
    fill('worst-fallbacks', data.worst.fallbacks, times);
    fill('worst-unsolved', data.worst.unsolved, times);
    fill('worst-handoffs', data.worst.handoffs, times);
  }

  async function load() {
    const q = new URLSearchParams();
    if (ui.since.value) q.set('since', ui.since.value);
    if (ui.until.value) q.set('until', ui.until.value);
    if (ui.by.value) q.set('by', ui.by.value);
    q.set('period', ui.period.value);
    ui.summary.textContent = 'Считаю показатели…';
    try {
      data = await api('/api/v1/analytics/indicators?' + q.toString());
    } catch (e) {
      ui.summary.textContent = '';
      if (e.status === 401) return showLogin(e.message);
      // 403: signed in, but not an analyst: nothing to show but the reason.
      if (e.status === 403) ui.main.hidden = true;
      showError(e.message);
      return;
    }
    ui.main.hidden = false;
    showError('');
    if (!ui.since.value && data.since) ui.since.value = data.since;
    if (!ui.until.value && data.until) ui.until.value = data.until;
    const n = data.total.conversations;
    const when = `С ${ruDate(data.since)} по ${ruDate(data.until)}`;
    ui.summary.textContent = n
      ? `${when}: ${num(n, 0)} ${plural(n, 'разговор', 'разговора', 'разговоров')}.`
      : `${when} разговоров не было.`;
    renderCards();
    renderChart();
    renderGroups();
    renderWorst();
  }

  function showApp(me) {
    ui.loginView.hidden = true;
    ui.app.hidden = false;
    ui.meName.textContent = me.name || me.login;
    load();
  }

  for (const [key, title] of INDICATORS) {
    const o = el('option', '', title);
    o.value = key;
    ui.chartOf.append(o);
  }
  ui.chartOf.addEventListener('change', () => data && renderChart());
  let resized = null;
  window.addEventListener('resize', () => {
    clearTimeout(resized);
    resized = setTimeout(() => data && renderChart(), 150);
  });
  ui.filters.addEventListener('submit', (ev) => {
    ev.preventDefault();
    load();
  });
  ui.loginForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const login = ui.login.value.trim();
    const password = ui.password.value;
    if (!login || !password) {
      showError('Введите логин и пароль.');
      return;
    }
    try {
      const me = await api('/api/v1/operator/login', 'POST', { login, password });
      ui.password.value = '';
      showError('');
      showApp(me);
    } catch (e) {
      showError(e.message);
    }
  });
  ui.logout.addEventListener('click', async () => {
    try {
      await api('/api/v1/operator/logout', 'POST');
    } catch (e) {
      // signed out locally anyway
    }
    data = null;
    showLogin('');
  });
  api('/api/v1/operator/me')
    .then(showApp)
    .catch(() => showLogin(''));
})();
