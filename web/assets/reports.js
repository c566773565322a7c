// ultimaker2mqtt's farm page, its Jobs and Reports views (?view=jobs,
// ?view=reports): the job log with its filters and a CSV of what is
// shown, and the utilisation by printer, cluster or owner drawn as SVG
// bars. Read from /api/jobs and /api/utilisation when asked, never on the
// farm view's load. Plain DOM, names as text only.
'use strict';
(() => {
  const params = new URLSearchParams(location.search);
  const view = params.get('view');
  if (view !== 'jobs' && view !== 'reports') return;
  const hooks = window.__u2m = window.__u2m || {};
  document.body.classList.add('view-report');
  const root = document.getElementById('report');
  root.hidden = false;
  for (const a of document.querySelectorAll('.views a')) a.setAttribute('aria-current', String(a.dataset.view === view));

  const collator = new Intl.Collator(undefined, {numeric: true, sensitivity: 'base'});
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  };
  const when = new Intl.DateTimeFormat(undefined, {dateStyle: 'medium', timeStyle: 'short'});
  const day = (d) => d.toISOString().slice(0, 10);
  const hours = (h) => h >= 10 ? Math.round(h) + ' h' : h.toFixed(1) + ' h';
  function duration(sec) {
    if (sec == null) return '–';
    const h = Math.floor(sec / 3600), m = Math.round(sec % 3600 / 60);
    return h ? h + ' h ' + m + ' min' : m + ' min';
  }
  const statusWords = {finished: 'Finished', aborted: 'Aborted', failed: 'Failed', printing: 'Printing', pre_print: 'Preparing',
    sent_to_printer: 'Sending', post_print: 'Finishing', pausing: 'Pausing', paused: 'Paused', resuming: 'Resuming',
    wait_cleanup: 'Done, not cleared', wait_user_action: 'Needs a person', aborting: 'Aborting'};

  // The period and filters, from the address (so a view can be
  // bookmarked) or the last 7 days.
  const today = new Date();
  const q = {
    from: params.get('from') || day(new Date(today.getTime() - 6 * 864e5)),
    to: params.get('to') || day(new Date(today.getTime() + 864e5)),
    printer: params.get('printer') || '', cluster: params.get('cluster') || '', status: params.get('status') || '',
    owner: params.get('owner') || '', q: params.get('q') || '', by: params.get('by') || 'printer',
    page: Number(params.get('page')) || 1,
  };
  const names = {printers: [], clusters: []};

  function field(label, input) {
    const l = el('label', 'field');
    l.append(el('span', '', label), input);
    return l;
  }
  function input(key, type) {
    const i = el('input');
    i.type = type || 'text';
    i.name = key;
    i.value = q[key];
    return i;
  }
  function select(key, options) {
    const s = el('select');
    s.name = key;
    for (const [value, text] of options) {
      const o = el('option', '', text);
      o.value = value;
      o.selected = value === q[key];
      s.append(o);
    }
    return s;
  }
  function query(keys) {
    const u = new URLSearchParams();
    for (const k of keys) if (q[k]) u.set(k, String(q[k]));
    return u;
  }
  function remember(keys) {
    const u = query(keys);
    u.set('view', view);
    history.replaceState(null, '', '?' + u.toString());
  }

  const form = el('form', 'filters');
  const out = el('div', 'results');
  out.setAttribute('aria-live', 'polite');
  root.append(el('h2', '', view === 'jobs' ? 'Jobs' : 'Reports'), form, out);

  async function load() {
    try {
      const [ps, cs] = await Promise.all([fetch('/api/printers').then((r) => r.json()), fetch('/api/clusters').then((r) => r.json())]);
      names.printers = ps.map((p) => [p.id, p.friendly_name || p.id]).sort((a, b) => collator.compare(a[1], b[1]));
      names.clusters = cs.filter((c) => c.printers && c.printers.length > 1)
        .map((c) => [c.id, c.friendly_name || c.id]).sort((a, b) => collator.compare(a[1], b[1]));
    } catch (e) { /* the filters offer what they can */ }
    if (view === 'jobs') jobsForm(); else reportsForm();
    show();
  }

  function jobsForm() {
    form.replaceChildren(field('From', input('from', 'date')), field('To (not included)', input('to', 'date')),
      field('Printer', select('printer', [['', 'All printers'], ...names.printers])),
      field('Group', select('cluster', [['', 'All groups'], ...names.clusters])),
      field('Result', select('status', [['', 'Any'], ['finished', 'Finished'], ['aborted', 'Aborted'], ['failed', 'Failed'],
        ['printing', 'Printing']])),
      field('Owner', input('owner')), field('Name contains', input('q', 'search')), submit());
  }
  function reportsForm() {
    form.replaceChildren(field('From', input('from', 'date')), field('To (not included)', input('to', 'date')),
      field('By', select('by', [['printer', 'Printer'], ['cluster', 'Group'], ['owner', 'Owner']])), submit());
  }
  function submit() {
    const b = el('button', 'primary', 'Show');
    b.type = 'submit';
    return b;
  }
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    for (const i of form.elements) if (i.name) q[i.name] = i.value;
    q.page = 1;
    show();
  });

  async function show() {
    const keys = view === 'jobs' ? ['from', 'to', 'printer', 'cluster', 'status', 'owner', 'q', 'page'] : ['from', 'to', 'by'];
    remember(keys);
    out.replaceChildren(el('p', 'muted', 'Reading the history…'));
    const path = view === 'jobs' ? '/api/jobs' : '/api/utilisation';
    const u = query(keys);
    if (view === 'jobs') u.set('per_page', '100');
    let body;
    try {
      const r = await fetch(path + '?' + u.toString());
      body = await r.json();
      if (!r.ok) throw new Error(body.error || r.statusText);
    } catch (e) {
      out.replaceChildren(el('p', 'error', 'The history could not be read: ' + e.message));
      return;
    }
    const csv = el('a', 'download', 'Download CSV');
    const cu = query(keys.filter((k) => k !== 'page'));
    csv.href = path + '.csv?' + cu.toString();
    csv.setAttribute('download', '');
    if (view === 'jobs') jobs(body, csv); else utilisation(body, csv);
    hooks.reportShown = (hooks.reportShown || 0) + 1;
  }

  function jobs(r, csv) {
    const head = el('p', 'summary');
    head.append(r.total + (r.total === 1 ? ' job' : ' jobs') + ' created in the period, newest first. ', csv);
    const t = el('table', 'jobs');
    const hr = el('tr');
    for (const h of ['Created', 'Job', 'Printer', 'Owner', 'Result', 'Printed', 'Materials', 'Waited to clear']) hr.append(el('th', '', h));
    const thead = el('thead');
    thead.append(hr);
    const tb = el('tbody');
    for (const j of r.jobs) {
      const tr = el('tr', 'r-' + j.status);
      tr.append(el('td', '', when.format(new Date(j.created))), el('td', 'name', j.name),
        el('td', '', j.printer_name || j.printer || '–'), el('td', '', j.owner || '–'),
        el('td', '', statusWords[j.status] || j.status), el('td', 'num', duration(j.time_elapsed)),
        el('td', '', (j.materials || []).join(', ') || '–'), el('td', 'num', j.waited_to_clear == null ? '–' : duration(j.waited_to_clear)));
      tb.append(tr);
    }
    t.append(thead, tb);
    const parts = [head, r.jobs.length ? t : el('p', 'muted', 'No job matches.')];
    const pages = Math.ceil(r.total / r.per_page);
    if (pages > 1) {
      const nav = el('nav', 'pager');
      const go = (p, text) => {
        const b = el('button', '', text);
        b.type = 'button';
        b.disabled = p < 1 || p > pages;
        b.addEventListener('click', () => { q.page = p; show(); });
        return b;
      };
      nav.append(go(r.page - 1, '← Newer'), el('span', '', 'Page ' + r.page + ' of ' + pages), go(r.page + 1, 'Older →'));
      parts.push(nav);
    }
    out.replaceChildren(...parts);
    hooks.jobRows = r.jobs.length;
  }

  // The utilisation: the farm's total, then a row and a bar per printer
  // (or group, or owner), sortable by any column.
  let sortKey = 'name', sortUp = true;
  function utilisation(u, csv) {
    const t = u.total;
    const total = el('div', 'total');
    total.append(el('strong', '', t.utilisation + ' %'), ' of the farm\'s hours printing · ' + hours(t.hours_printed) +
      ' printed · ' + t.jobs + ' jobs · ' + (t.success_rate == null ? 'no job ended' : t.success_rate + ' % finished') +
      (t.clears_seen ? ' · a finished print waited ' + duration(t.clear_wait_mean) + ' on average to be cleared (longest ' +
        duration(t.clear_wait_max) + ')' : ''), ' ', csv);
    const cols = [['name', 'Name'], ['utilisation', 'Utilisation'], ['hours_printed', 'Printed'], ['jobs', 'Jobs'],
      ['finished', 'Finished'], ['aborted', 'Aborted'], ['failed', 'Failed'], ['success_rate', 'Success'],
      ['clear_wait_mean', 'Cleared after (mean)'], ['clear_wait_max', 'Longest']];
    const draw = () => {
      const rows = [...u.rows].sort((a, b) => {
        const d = sortKey === 'name' ? collator.compare(a.name, b.name) : (a[sortKey] ?? -1) - (b[sortKey] ?? -1);
        return (sortUp ? d : -d) || collator.compare(a.name, b.name);
      });
      const table = el('table', 'utilisation');
      const hr = el('tr');
      for (const [key, text] of cols) {
        const th = el('th');
        const b = el('button', 'sort', text + (key === sortKey ? (sortUp ? ' ▲' : ' ▼') : ''));
        b.type = 'button';
        th.setAttribute('aria-sort', key === sortKey ? (sortUp ? 'ascending' : 'descending') : 'none');
        b.addEventListener('click', () => {
          sortUp = key === sortKey ? !sortUp : key === 'name';
          sortKey = key;
          draw();
        });
        th.append(b);
        hr.append(th);
      }
      const thead = el('thead');
      thead.append(hr);
      const tb = el('tbody');
      for (const r of rows) {
        const tr = el('tr');
        const util = el('td', 'util');
        const cell = el('div', 'util-cell');
        cell.append(bar(r.utilisation), el('span', 'num', r.utilisation + ' %'));
        util.append(cell);
        tr.append(el('td', 'name', r.name), util, el('td', 'num', hours(r.hours_printed)), el('td', 'num', String(r.jobs)),
          el('td', 'num', String(r.finished)), el('td', 'num', String(r.aborted)), el('td', 'num', String(r.failed)),
          el('td', 'num', r.success_rate == null ? '–' : r.success_rate + ' %'), el('td', 'num', duration(r.clear_wait_mean)),
          el('td', 'num', duration(r.clear_wait_max)));
        tb.append(tr);
      }
      table.append(thead, tb);
      out.replaceChildren(total, table);
      hooks.utilisationRows = rows.map((r) => r.name);
    };
    draw();
  }

  // bar is a utilisation as an SVG bar (0 to 100 %).
  function bar(percent) {
    const ns = 'http://www.w3.org/2000/svg';
    const svg = document.createElementNS(ns, 'svg');
    svg.setAttribute('viewBox', '0 0 100 10');
    svg.setAttribute('preserveAspectRatio', 'none');
    svg.setAttribute('class', 'util-bar');
    svg.setAttribute('aria-hidden', 'true');
    const track = document.createElementNS(ns, 'rect');
    track.setAttribute('class', 'track');
    track.setAttribute('width', '100');
    track.setAttribute('height', '10');
    const fill = document.createElementNS(ns, 'rect');
    fill.setAttribute('class', 'fill');
    fill.setAttribute('width', String(Math.max(0, Math.min(100, percent))));
    fill.setAttribute('height', '10');
    svg.append(track, fill);
    return svg;
  }

  load();
})();
