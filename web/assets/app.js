// ultimaker2mqtt's farm page: every printer at a glance, live over
// Server-Sent Events (/api/stream), read-only until the bridge's token is
// given. No framework, no build step: the DOM, built with textContent
// (names come from the cloud and are never parsed as HTML).
'use strict';
(() => {
  const params = new URLSearchParams(location.search);
  const view = params.get('view') || 'farm';
  const wall = view === 'wall';
  // ?cluster=<id> (repeated, or a list) shows those clusters' printers only: a TV per room.
  const onlyClusters = new Set(params.getAll('cluster').flatMap((c) => c.split(',')).filter(Boolean));
  // Names in the order people count: "Farm 2" before "Farm 10".
  const collator = new Intl.Collator(undefined, {numeric: true, sensitivity: 'base'});
  const byName = (a, b) => collator.compare(a, b);
  const filters = ['all', 'online', 'offline', 'printing', 'paused', 'idle', 'attention'];
  let filter = filters.includes(params.get('filter')) ? params.get('filter') : 'all';
  const S = {printers: new Map(), clusters: new Map(), info: {}, health: null, feed: [], statistics: {},
    pictures: {}, controls: false, since: new Map()};
  let token = sessionStorage.getItem('u2m-token') || '';
  let txn = 0;
  // What the page applied, for tests and the benchmark: [printer, updated_at, time shown].
  const hooks = window.__u2m = {ready: false, applied: [], errors: 0};

  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  };
  const words = {idle: 'Idle', printing: 'Printing', pre_print: 'Preparing', sent_to_printer: 'Sending', post_print: 'Finishing',
    pausing: 'Pausing', paused: 'Paused', resuming: 'Resuming', wait_cleanup: 'Done, clear the plate', finished: 'Finished',
    wait_user_action: 'Needs a person', aborting: 'Aborting', aborted: 'Aborted', failed: 'Failed', error: 'Error',
    maintenance: 'Maintenance', booting: 'Booting', disabled: 'Disabled', offline: 'Offline', unknown: 'Unknown'};
  const word = (s) => words[s] || String(s || 'unknown').replace(/_/g, ' ');

  // The kind of a status: its colour class and icon (never colour alone).
  function kindOf(p) {
    if (!p.online) return ['s-offline', '⊘'];
    if (attention(p).some((a) => a.bad)) return ['s-attention', '⚠'];
    switch (p.status) {
      case 'paused': case 'pausing': return ['s-paused', '‖'];
      case 'wait_cleanup': case 'finished': return ['s-done', '✓'];
      case 'idle': return ['s-idle', '○'];
    }
    return p.printing ? ['s-printing', '▶'] : ['s-idle', '○'];
  }

  // What needs a person, as badges: bad ones make the tile red.
  function attention(p) {
    const out = [];
    if (['error', 'wait_user_action'].includes(p.status) || (p.errors && p.errors.length)) {
      out.push({text: p.errors && p.errors.length ? 'Problem: ' + p.errors.join(', ') : 'Problem', bad: true});
    }
    if (p.status === 'wait_cleanup') out.push({text: 'Clear the build plate'});
    if (p.maintenance && p.maintenance.required) out.push({text: 'Maintenance due'});
    if (p.local_auth === 'required') out.push({text: 'LAN sign-in needed', bad: true});
    if (p.firmware && p.firmware.update_available) out.push({text: 'Firmware ' + (p.firmware.latest || 'update')});
    return out;
  }
  const needsAttention = (p) => attention(p).length > 0;

  function matches(p, f) {
    if (onlyClusters.size && !onlyClusters.has(p.cluster)) return false;
    switch (f) {
      case 'online': return p.online;
      case 'offline': return !p.online;
      case 'printing': return p.online && p.printing && !['paused', 'pausing'].includes(p.status);
      case 'paused': return p.online && ['paused', 'pausing'].includes(p.status);
      case 'idle': return p.online && !p.job && !needsAttention(p);
      case 'attention': return needsAttention(p);
    }
    return true;
  }
  const rank = (p) => needsAttention(p) ? 0 : !p.online ? 3 : p.job ? 1 : 2;

  // Times in the viewer's own zone.
  const clock = new Intl.DateTimeFormat(undefined, {hour: '2-digit', minute: '2-digit'});
  const dayClock = new Intl.DateTimeFormat(undefined, {weekday: 'short', hour: '2-digit', minute: '2-digit'});
  const fullClock = new Intl.DateTimeFormat(undefined, {hour: '2-digit', minute: '2-digit', second: '2-digit'});
  function duration(sec) {
    sec = Math.max(0, Math.round(sec));
    const h = Math.floor(sec / 3600), m = Math.floor(sec % 3600 / 60);
    if (h > 0) return h + ' h ' + m + ' min';
    if (m > 0) return m + ' min';
    return '< 1 min';
  }
  function at(iso) {
    if (!iso) return '';
    const d = new Date(iso);
    return (d.toDateString() === new Date().toDateString() ? clock : dayClock).format(d);
  }
  const colours = {white: '#f5f5f5', black: '#1c1c1c', blue: '#1f5fbf', red: '#c62828', green: '#2e7d32', yellow: '#f9d71c',
    orange: '#ef7d00', silver: '#b8bcc2', grey: '#8a8f96', gray: '#8a8f96', natural: '#e9e0c9', transparent: '#dfe6ea',
    pink: '#e91e8c', purple: '#7b1fa2', brown: '#6d4c41', gold: '#c9a227', magenta: '#c2185b', cyan: '#00acc1'};
  function colourOf(name) {
    const n = String(name || '').toLowerCase();
    for (const [k, v] of Object.entries(colours)) if (n.includes(k)) return v;
    return '';
  }

  // How long a printer has had its status: from its job's start while
  // it prints, else since the bridge saw the status begin (status_since).
  function sinceOf(p) {
    if (p.job && p.job.started_at && ['printing', 'pre_print'].includes(p.status)) return Date.parse(p.job.started_at);
    if (p.status_since) return Date.parse(p.status_since);
    const s = S.since.get(p.id);
    return s ? s.at : Date.now();
  }

  // The picture a tile shows: a camera picture taken during this job,
  // else the job's preview, else the latest picture.
  function imageOf(p) {
    const pic = S.pictures[p.id];
    const started = p.job && p.job.started_at ? Date.parse(p.job.started_at) : 0;
    if (pic && (!p.job || Date.parse(pic) >= started)) return '/api/printers/' + p.id + '/picture?t=' + Date.parse(pic);
    if (p.job && p.job.preview_url) return '/api/printers/' + p.id + '/preview?job=' + encodeURIComponent(p.job.uuid);
    if (pic) return '/api/printers/' + p.id + '/picture?t=' + Date.parse(pic);
    return '';
  }

  const tiles = new Map(); // printer id -> tile element
  const tileAnswers = new Map(); // printer id -> its tile's answer line

  function tile(p) {
    let t = tiles.get(p.id);
    if (!t) {
      t = el(wall ? 'div' : 'article', 'tile');
      if (!wall) {
        // The whole tile opens the detail; its name is the button that
        // does it from the keyboard. Its controls do their own thing.
        t.addEventListener('click', (e) => { if (!e.target.closest('.controls')) openDetail(t.dataset.id); });
      }
      t.dataset.id = p.id;
      tiles.set(p.id, t);
    }
    const [cls, icon] = kindOf(p);
    t.className = 'tile ' + cls;
    const head = el('div', 'head');
    let name = el('span', 'name', p.friendly_name || p.id);
    if (!wall) {
      name = el('button', 'name', p.friendly_name || p.id);
      name.type = 'button';
      name.setAttribute('aria-haspopup', 'dialog');
    }
    head.append(name,
      el('span', 'model', [p.machine_variant, {cloud: 'cloud', local: 'LAN', 'cloud+local': 'LAN + cloud'}[p.source]]
        .filter(Boolean).join(' · ')));
    const status = el('div', 'status');
    const ic = el('span', '', icon + ' ');
    ic.setAttribute('aria-hidden', 'true');
    status.append(ic, word(p.status), el('span', 'since', ' · ' + duration((Date.now() - sinceOf(p)) / 1000)));
    const parts = [head, status];
    const j = p.job;
    if (j) {
      parts.push(el('div', 'job', j.name));
      const bar = el('progress');
      bar.max = 100;
      bar.value = j.progress || 0;
      bar.setAttribute('aria-label', 'Progress ' + Math.floor(j.progress || 0) + '%');
      parts.push(bar);
      const times = [Math.floor(j.progress || 0) + '%'];
      if (j.time_remaining) times.push(duration(j.time_remaining) + ' left');
      if (j.eta) times.push('done ' + at(j.eta));
      parts.push(el('div', 'times', times.join(' · ')));
    } else {
      parts.push(el('div', 'job', p.last_job ? 'Last: ' + p.last_job.name + ' (' + p.last_job.result + ')' : 'No job'));
    }
    const temps = [];
    (p.extruders || []).forEach((e, i) => {
      if (e.hotend_temperature != null) {
        temps.push('Hotend ' + (i + 1) + ' ' + Math.round(e.hotend_temperature) + ' °C' +
          (e.hotend_target ? ' / ' + Math.round(e.hotend_target) : ''));
      }
    });
    if (p.build_plate && p.build_plate.temperature != null) {
      temps.push('Bed ' + Math.round(p.build_plate.temperature) + ' °C' + (p.build_plate.target ? ' / ' + Math.round(p.build_plate.target) : ''));
    }
    if (p.chamber && p.chamber.temperature != null) temps.push('Chamber ' + Math.round(p.chamber.temperature) + ' °C');
    if (temps.length) parts.push(el('div', 'temps', temps.join(' · ')));
    const mats = el('div', 'materials');
    (p.extruders || []).forEach((e) => {
      if (!e.material) return;
      const sw = el('span', 'swatch');
      const c = colourOf(e.color);
      if (c) sw.style.backgroundColor = c;
      sw.setAttribute('aria-hidden', 'true');
      mats.append(sw, [e.material, e.color].filter(Boolean).join(' ') + '  ');
    });
    if (mats.childNodes.length) parts.push(mats);
    const src = imageOf(p);
    if (src) {
      let img = t.querySelector('img');
      if (!img || img.dataset.src !== src) {
        img = el('img');
        img.loading = 'lazy';
        img.decoding = 'async';
        img.dataset.src = src;
        img.src = src;
        img.addEventListener('error', () => img.replaceWith(el('div', 'img-none')));
      }
      img.alt = (p.friendly_name || p.id) + (src.includes('/preview') ? ': job preview' : ': camera');
      parts.push(img);
    } else {
      parts.push(el('div', 'img-none'));
    }
    const badges = el('div', 'badges');
    attention(p).forEach((a) => badges.append(el('span', 'badge ' + (a.bad ? 'bad' : 'attention'), a.text)));
    if (badges.childNodes.length) parts.push(badges);
    if (token && !wall && j) {
      // The answer line outlives the tile's redraws (the action's effect
      // redraws it at once).
      let out = tileAnswers.get(p.id);
      if (!out) {
        out = el('span', 'answer');
        out.setAttribute('role', 'status');
        tileAnswers.set(p.id, out);
      }
      parts.push(jobControls(p, out, false), out);
    }
    t.replaceChildren(...parts);
    t.setAttribute('aria-label', (p.friendly_name || p.id) + ': ' + word(p.status) + (j ? ', ' + j.name + ' ' +
      Math.floor(j.progress || 0) + '%' : ''));
    return t;
  }

  // Layout: the farm grouped by cluster, what needs a person first.
  let wallPage = 0;
  function layout() {
    const farm = $('farm');
    const shown = [...S.printers.values()].filter((p) => matches(p, filter));
    shown.sort((a, b) => rank(a) - rank(b) || byName(a.friendly_name || a.id, b.friendly_name || b.id));
    if (wall) return layoutWall(farm, shown);
    // A group of printers has its own section; the printers that stand
    // alone (the cloud makes each one a cluster of one) share one.
    const groups = new Map();
    for (const p of shown) {
      const c = S.clusters.get(p.cluster);
      const key = c && c.printers.length > 1 ? p.cluster : '';
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(p);
    }
    const order = [...groups.entries()].sort(([a, pa], [b, pb]) => rank(pa[0]) - rank(pb[0]) ||
      byName(clusterName(a), clusterName(b)));
    const plan = order.map(([cid, ps]) => {
      const c = S.clusters.get(cid);
      return {title: cid ? clusterName(cid) : groups.size > 1 ? 'Other printers' : 'Printers',
        sub: c ? c.printers_online + ' of ' + c.printers.length + ' online · ' + c.queue.length + ' queued' : '',
        ids: ps.map((p) => p.id)};
    });
    // The tiles are updated in place; the farm is laid out again only when
    // its order, its groups or their headings changed (a thousand tiles
    // moved at each update would keep the page busy).
    const sig = JSON.stringify(plan) + '|' + S.printers.size;
    if (sig === lastLayout) return;
    lastLayout = sig;
    const sections = plan.map((g) => {
      const sec = el('section', 'cluster');
      const h = el('h2', '', g.title);
      if (g.sub) h.append(el('small', '', g.sub));
      const grid = el('div', 'tiles');
      grid.append(...g.ids.map((id) => tiles.get(id) || tile(S.printers.get(id))));
      sec.append(h, grid);
      return sec;
    });
    if (!sections.length) sections.push(el('p', 'empty', S.printers.size ? 'No printer matches this filter.' : 'No printers yet.'));
    farm.replaceChildren(...sections);
  }
  let lastLayout = '';
  const clusterName = (cid) => (S.clusters.get(cid) || {}).friendly_name || cid || '';

  // Wall mode, for a TV: every printer on one screen while a person can
  // still read the tiles from across a room; beyond that, pages shown in
  // turn every 15 s. Up to fullTiles printers get the whole tile; more get
  // a compact one (name, status word and icon, progress, time left: the
  // rest yields first) of at least compactMin px.
  const fullTiles = 24;
  const compactMin = {w: 220, h: 84};
  function layoutWall(farm, shown) {
    const compact = shown.length > fullTiles;
    const top = 8 + ($('counters').getBoundingClientRect().bottom || 0);
    const W = window.innerWidth - 32, H = Math.max(compactMin.h, window.innerHeight - top - 24);
    let perPage = fullTiles;
    if (compact) perPage = Math.max(1, Math.floor(W / compactMin.w) * Math.floor(H / compactMin.h));
    const pages = Math.max(1, Math.ceil(shown.length / perPage));
    wallPage %= pages;
    const slice = shown.slice(wallPage * perPage, wallPage * perPage + perPage);
    const n = Math.max(1, slice.length);
    let cols;
    if (compact) {
      // As many columns as keep the tiles at least compactMin wide, and
      // rows to hold the page.
      cols = Math.max(1, Math.min(Math.floor(W / compactMin.w), Math.ceil(n / Math.floor(H / compactMin.h))));
      while (cols < Math.floor(W / compactMin.w) && Math.ceil(n / cols) * compactMin.h > H) cols++;
    } else {
      const aspect = W / H;
      cols = Math.min(n, Math.max(1, Math.round(Math.sqrt(n * aspect * 0.75))));
    }
    const rows = Math.ceil(n / cols);
    const grid = el('div', 'wall-grid' + (compact ? ' compact' : ''));
    grid.style.setProperty('--cols', cols);
    grid.style.setProperty('--rows', rows);
    const ts = slice.map((p) => compact ? wallTile(p) : tiles.get(p.id) || tile(p));
    grid.append(...ts);
    const parts = [grid];
    if (pages > 1) parts.push(el('p', 'wall-page', 'Page ' + (wallPage + 1) + ' of ' + pages + ' · ' + shown.length + ' printers'));
    farm.replaceChildren(...parts);
    if (compact) shortenNames(ts);
    hooks.wallPages = pages;
    hooks.wallPerPage = perPage;
  }

  // wallTile is a printer's compact tile on a wall of many.
  function wallTile(p) {
    const [cls, icon] = kindOf(p);
    const t = el('div', 'tile wall-tile ' + cls);
    t.dataset.id = p.id;
    const full = p.friendly_name || p.id;
    const name = el('div', 'name', full);
    name.dataset.full = full;
    name.title = full;
    const status = el('div', 'status');
    const ic = el('span', 'icon', icon);
    ic.setAttribute('aria-hidden', 'true');
    const j = p.job;
    status.append(ic, ' ' + word(p.status));
    const parts = [name, status];
    if (j) {
      const line = el('div', 'progress-line');
      const bar = el('progress');
      bar.max = 100;
      bar.value = j.progress || 0;
      line.append(bar);
      if (j.time_remaining && p.printing) line.append(el('span', 'left', short(j.time_remaining) + ' left'));
      parts.push(line);
    } else if (needsAttention(p)) {
      parts.push(el('div', 'why', attention(p)[0].text));
    }
    t.append(...parts);
    t.setAttribute('aria-label', full + ': ' + word(p.status) + (j ? ', ' + Math.floor(j.progress || 0) + '%' : ''));
    return t;
  }
  // short is a duration that fits a tile: "1h 9m", "25m".
  function short(sec) {
    const h = Math.floor(sec / 3600), m = Math.floor(sec % 3600 / 60);
    return h ? h + 'h ' + m + 'm' : Math.max(1, m) + 'm';
  }

  // shortenNames fits each name in its tile. A name that must be shortened
  // keeps what tells the printers apart, its end ("Farm Room B … 138"),
  // and no two tiles on the page end up showing the same.
  const measure = document.createElement('canvas').getContext('2d');
  function shortenNames(ts) {
    if (!ts.length) return;
    const first = ts[0].querySelector('.name');
    const style = getComputedStyle(first);
    measure.font = style.fontWeight + ' ' + style.fontSize + ' ' + style.fontFamily;
    const room = first.clientWidth;
    const fits = (s) => measure.measureText(s).width <= room;
    const names = ts.map((t) => t.querySelector('.name'));
    const shown = names.map((n) => {
      const full = n.dataset.full;
      if (fits(full)) return full;
      return cut(full, tailOf(full));
    });
    // Names shortened alike keep more of their end until they differ.
    for (let round = 0; round < 8; round++) {
      const seen = new Map();
      shown.forEach((s, i) => seen.set(s, (seen.get(s) || []).concat(i)));
      const clashes = [...seen.values()].filter((is) => is.length > 1 && is.some((i) => shown[i] !== names[i].dataset.full));
      if (!clashes.length) break;
      for (const is of clashes) {
        for (const i of is) {
          const full = names[i].dataset.full;
          const tail = shown[i].includes('…') ? shown[i].length - shown[i].indexOf('…') - 1 : full.length;
          shown[i] = cut(full, Math.min(full.length, tail + 3));
        }
      }
    }
    names.forEach((n, i) => { n.textContent = shown[i]; });
    hooks.wallNames = shown;
    // cut keeps the last keep characters and as much of the start as
    // fits, ending it at a word where it can.
    function cut(full, keep) {
      const end = full.slice(-keep);
      let any = '';
      for (let k = full.length - keep - 1; k > 0; k--) {
        const s = full.slice(0, k).trimEnd() + '…' + end;
        if (!fits(s)) continue;
        if (/[\s·,;:|/-]/.test(full[k] || '')) return s;
        any = any || s;
      }
      return any || '…' + end;
    }
    // tailOf is how much of a name's end tells it apart: its last word,
    // and the one before when the last is a short number ("Farm 138").
    function tailOf(full) {
      const words = full.split(/(?<=[\s_-])/);
      let tail = words[words.length - 1];
      if (words.length > 1 && tail.length <= 4) tail = words[words.length - 2] + tail;
      return Math.min(full.length, Math.max(3, tail.length));
    }
  }
  if (wall) {
    document.body.classList.add('wall');
    setInterval(() => { wallPage++; layout(); }, 15000);
    window.addEventListener('resize', () => layout());
  }

  function counters() {
    const all = [...S.printers.values()];
    const labels = {all: 'Printers', online: 'Online', offline: 'Offline', printing: 'Printing', paused: 'Paused',
      idle: 'Idle', attention: 'Need attention'};
    const nav = $('counters');
    nav.replaceChildren(...filters.map((f) => {
      const b = el('button', 'counter');
      b.type = 'button';
      b.dataset.filter = f;
      b.setAttribute('aria-pressed', String(f === filter));
      b.append(el('b', '', String(all.filter((p) => matches(p, f)).length)), el('span', '', labels[f]));
      b.addEventListener('click', () => setFilter(f === filter ? 'all' : f));
      return b;
    }));
  }
  function setFilter(f) {
    filter = f;
    const q = new URLSearchParams(location.search);
    if (f === 'all') q.delete('filter'); else q.set('filter', f);
    history.replaceState(null, '', '?' + q.toString());
    wallPage = 0;
    counters();
    layout();
  }

  function health() {
    const i = S.info || {}, h = S.health;
    const items = [];
    const check = (ok, text) => items.push(el('span', ok ? 'ok' : 'bad', text));
    if (h && h.checks) {
      for (const c of h.checks) check(c.ok, {broker: 'Broker', poll: 'Polling', sign_in: 'Sign-in'}[c.name] || c.name);
    }
    if (i.auth !== 'lan_only') check(i.cloud_reachable, 'Cloud');
    if (i.rate_limited_until) items.push(el('span', 'bad', 'Rate limited until ' + at(i.rate_limited_until)));
    if (i.last_poll) items.push(el('span', '', 'Last poll ' + fullClock.format(new Date(i.last_poll))));
    items.push(el('span', i.poll_errors ? '' : '', (i.poll_errors || 0) + ' poll errors'));
    if (i.version) items.push(el('span', '', 'ultimaker2mqtt ' + i.version));
    $('health').replaceChildren(...items);
  }

  // The activity feed: events of the farm and answers to commands.
  const eventWords = {print_started: 'print started', print_paused: 'print paused', print_resumed: 'print resumed',
    print_finished: 'print finished', print_aborted: 'print aborted', print_failed: 'print failed',
    user_action_required: 'needs a person', printer_error: 'error', printer_online: 'back online',
    printer_offline: 'went offline', maintenance_due: 'maintenance due', firmware_update_available: 'firmware available'};
  function feedText(it) {
    const who = it.name || (S.printers.get(it.printer) || {}).friendly_name || it.printer || clusterName(it.cluster) || 'bridge';
    if (it.kind === 'answer') {
      return who + ': ' + it.action + ' → ' + it.status + (it.code ? ' (' + it.code + ': ' + it.message + ')' : '');
    }
    return who + ': ' + (eventWords[it.event] || it.event) + (it.job ? ' — ' + it.job : '') + (it.detail ? ' (' + it.detail + ')' : '') +
      (it.late ? ' · seen late' : '');
  }
  function feedItem(it) {
    const li = el('li', it.code ? 'error' : '');
    const t = el('time', '', fullClock.format(new Date(it.time)));
    t.dateTime = it.time;
    li.append(t, feedText(it));
    return li;
  }
  function renderFeed() {
    $('feed').replaceChildren(...S.feed.slice(-100).reverse().map(feedItem));
  }

  // Updates from the stream are applied as they come; the layout (order,
  // counters) at most once a second.
  let layoutDue = false;
  function later() {
    if (layoutDue) return;
    layoutDue = true;
    setTimeout(() => { layoutDue = false; counters(); layout(); health(); }, wall ? 1000 : 300);
  }
  function putPrinter(p) {
    const old = S.printers.get(p.id);
    if (!old || old.status !== p.status) S.since.set(p.id, {status: p.status, at: old ? Date.now() : Date.parse(p.updated_at)});
    S.printers.set(p.id, p);
    const t = tile(p);
    if (detailID === p.id) renderDetail();
    hooks.applied.push([p.id, p.updated_at, performance.timeOrigin + performance.now(), p.friendly_name]);
    if (hooks.applied.length > 20000) hooks.applied.splice(0, 10000);
    return t;
  }

  // The live stream. Whatever ends it (the bridge restarting, a proxy's
  // 502, a 503 at the stream limit, a network change, a laptop waking up)
  // the page connects again by itself, with backoff, and meanwhile says
  // it is not live and since when, on the wall too: a screen must never
  // show a frozen farm as live. The stream sends something every 5 s.
  const staleAfter = 12000;
  let es = null, lastHeard = 0, notLiveSince = Date.now(), retryIn = 1000, retryTimer = 0;
  const heard = () => { lastHeard = Date.now(); };
  function showLive() {
    const live = $('live'), banner = $('stale');
    const down = notLiveSince > 0;
    document.body.classList.toggle('not-live', down && hooks.ready);
    live.classList.toggle('down', down);
    if (!down) {
      live.textContent = 'live';
      banner.hidden = true;
      return;
    }
    const text = hooks.ready ? 'Not live since ' + fullClock.format(new Date(notLiveSince)) + ' · reconnecting…' : 'connecting…';
    live.textContent = text;
    banner.textContent = text;
    banner.hidden = !hooks.ready;
  }
  function lost() {
    if (es) { es.close(); es = null; }
    if (!notLiveSince) notLiveSince = lastHeard || Date.now();
    hooks.reconnects = (hooks.reconnects || 0) + 1;
    showLive();
    if (retryTimer) return;
    if (hooks.ready) catchUp();
    const wait = retryIn * (0.75 + Math.random() * 0.5);
    retryIn = Math.min(retryIn * 2, 15000);
    retryTimer = setTimeout(() => { retryTimer = 0; connect(); }, wait);
  }
  function reconnectNow() {
    clearTimeout(retryTimer);
    retryTimer = 0;
    retryIn = 1000;
    if (es) { es.close(); es = null; }
    connect();
  }
  setInterval(() => { if (es && Date.now() - lastHeard > staleAfter) lost(); }, 2000);
  window.addEventListener('online', () => { if (notLiveSince) reconnectNow(); });
  // A laptop that wakes up: its timers slept too.
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden && (notLiveSince || Date.now() - lastHeard > staleAfter)) reconnectNow();
  });

  // The whole farm as the bridge has it: from the stream's first event,
  // or from /api/snapshot while no stream can be had.
  function applySnapshot(d) {
    S.printers.clear();
    S.clusters.clear();
    for (const c of d.clusters) S.clusters.set(c.id, c);
    const seen = new Set();
    for (const p of d.printers) { putPrinter(p); seen.add(p.id); }
    for (const id of tiles.keys()) if (!seen.has(id)) tiles.delete(id);
    S.info = d.info; S.health = d.health; S.feed = d.feed || []; S.statistics = d.statistics || {};
    S.pictures = d.pictures || {}; S.controls = d.controls;
    for (const id of Object.keys(S.pictures)) { const p = S.printers.get(id); if (p) tile(p); }
    counters(); layout(); health(); renderFeed(); controlsShown();
  }
  // While the stream is refused (a bridge whose streams are all taken)
  // the page still shows the farm as it is, not as it was.
  async function catchUp() {
    try {
      const r = await fetch('/api/snapshot', {cache: 'no-store'});
      if (!r.ok || !notLiveSince) return;
      applySnapshot(await r.json());
      hooks.caughtUp = (hooks.caughtUp || 0) + 1;
    } catch (e) { /* the bridge is away: the banner says so */ }
  }

  function connect() {
    es = new EventSource('/api/stream');
    heard();
    const on = (name, f) => es.addEventListener(name, (e) => { heard(); f(e); });
    on('snapshot', (e) => {
      applySnapshot(JSON.parse(e.data));
      notLiveSince = 0;
      retryIn = 1000;
      hooks.ready = true;
      hooks.snapshots = (hooks.snapshots || 0) + 1;
      showLive();
      // When the first frame with every tile was painted, in ms since the
      // page's navigation started (the benchmark reads it).
      if (!hooks.renderedAt) requestAnimationFrame(() => setTimeout(() => { hooks.renderedAt = performance.now(); }));
    });
    on('ping', () => {});
    on('printers', (e) => { for (const p of JSON.parse(e.data)) putPrinter(p); later(); });
    on('clusters', (e) => {
      for (const c of JSON.parse(e.data)) S.clusters.set(c.id, c);
      if (detailID) renderDetail();
      later();
    });
    on('removed', (e) => {
      const d = JSON.parse(e.data);
      for (const id of d.printers) { S.printers.delete(id); tiles.delete(id); }
      for (const id of d.clusters) S.clusters.delete(id);
      later();
    });
    on('bridge', (e) => { const d = JSON.parse(e.data); S.info = d.info; S.health = d.health; later(); });
    on('feed', (e) => {
      // An event seen late is placed at its time.
      S.feed.push(...JSON.parse(e.data));
      S.feed.sort((a, b) => Date.parse(a.time) - Date.parse(b.time));
      if (S.feed.length > 200) S.feed.splice(0, S.feed.length - 200);
      renderFeed();
      if (detailID) renderDetail();
    });
    on('statistics', (e) => { S.statistics = JSON.parse(e.data); if (detailID) renderDetail(); });
    on('pictures', (e) => {
      const d = JSON.parse(e.data);
      Object.assign(S.pictures, d);
      for (const id of Object.keys(d)) { const p = S.printers.get(id); if (p) tile(p); }
      if (detailID && d[detailID]) renderDetail();
    });
    // The browser retries a stream that dropped after a 200, but never
    // one answered otherwise: the page retries every kind itself.
    es.onerror = () => lost();
  }

  // Controls: shown once the person gave the bridge's token.
  function controlsShown(tokenChanged) {
    $('unlock').hidden = wall || !S.controls || !!token;
    if (tokenChanged) for (const p of S.printers.values()) tile(p);
    if (detailID) renderDetail();
  }
  async function checkToken(t) {
    const r = await fetch('/api/auth', {headers: {Authorization: 'Bearer ' + t}});
    return r.status === 204;
  }
  function lock() {
    token = '';
    sessionStorage.removeItem('u2m-token');
    controlsShown(true);
  }
  $('unlock').addEventListener('click', () => {
    $('token-error').textContent = '';
    $('token-input').value = '';
    $('token-dialog').showModal();
  });
  $('token-cancel').addEventListener('click', () => $('token-dialog').close());
  $('token-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const t = $('token-input').value.trim();
    if (await checkToken(t)) {
      token = t;
      sessionStorage.setItem('u2m-token', t);
      $('token-dialog').close();
      controlsShown(true);
    } else {
      $('token-error').textContent = 'The bridge did not accept that token.';
    }
  });
  if (token) checkToken(token).then((ok) => { if (!ok) lock(); });

  async function act(kind, id, body, out) {
    out.className = 'answer';
    out.textContent = body.action + '…';
    body.transaction = 'web-' + (++txn);
    try {
      const r = await fetch('/api/' + kind + '/' + id + '/actions', {method: 'POST',
        headers: {'Content-Type': 'application/json', Authorization: 'Bearer ' + token}, body: JSON.stringify(body)});
      const a = await r.json();
      if (r.status === 401) { lock(); }
      if (a.status === 'ok') {
        out.textContent = body.action + ': ok';
      } else {
        out.className = 'answer error';
        out.textContent = body.action + ': ' + (a.error ? a.error.code + ' — ' + a.error.message : a.error || r.status);
      }
    } catch (err) {
      out.className = 'answer error';
      out.textContent = body.action + ': ' + err;
    }
  }

  // A printer's controls, once unlocked: pause or resume, abort (after a
  // confirm), and in the detail a snapshot. Answers go to out.
  function jobControls(p, out, detail) {
    const ctl = el('div', 'controls');
    const js = p.job ? p.job.status : '';
    const button = (label, action, ok, confirmText, cls) => {
      const b = el('button', cls || '', label);
      b.type = 'button';
      b.disabled = !ok;
      b.addEventListener('click', () => {
        if (confirmText && !confirm(confirmText)) return;
        act('printers', p.id, {action}, out);
      });
      ctl.append(b);
    };
    if (detail || js !== 'paused') button('Pause', 'pause', js === 'printing');
    if (detail || js === 'paused') button('Resume', 'resume', js === 'paused');
    button('Abort', 'abort', ['pre_print', 'printing', 'pausing', 'paused', 'resuming'].includes(js),
      'Abort ' + (p.job ? p.job.name : 'the print') + ' on ' + (p.friendly_name || p.id) + '?', 'danger');
    if (detail) button('Take snapshot', 'snapshot', p.online);
    return ctl;
  }

  // A printer's detail: the whole state, queue, recent jobs, maintenance,
  // statistics and its events.
  let detailID = '';
  function openDetail(id) {
    detailID = id;
    renderDetail();
    $('detail').showModal();
  }
  $('detail').addEventListener('close', () => { detailID = ''; });
  function table(head, rows) {
    const t = el('table');
    const tr = el('tr');
    head.forEach((h) => tr.append(el('th', '', h)));
    t.append(tr);
    rows.forEach((r) => {
      const row = el('tr');
      r.forEach((c) => row.append(c instanceof Node ? wrap(c) : el('td', '', c)));
      t.append(row);
    });
    return t;
  }
  const wrap = (n) => { const td = el('td'); td.append(n); return td; };
  let lastAnswer = null;
  function renderDetail() {
    const p = S.printers.get(detailID);
    const body = $('detail-body');
    if (!p) { body.replaceChildren(el('p', '', 'This printer is gone.')); return; }
    const c = S.clusters.get(p.cluster) || {};
    const parts = [el('h2', '', p.friendly_name || p.id)];
    parts[0].id = 'detail-title';
    const [, icon] = kindOf(p);
    parts.push(el('p', '', icon + ' ' + word(p.status) + ' · ' + [p.machine_variant, p.source, p.id].filter(Boolean).join(' · ')));
    const out = lastAnswer && lastAnswer.id === p.id ? lastAnswer.el : el('p', 'answer');
    out.setAttribute('role', 'status');
    lastAnswer = {id: p.id, el: out};
    if (token && !wall) parts.push(jobControls(p, out, true));
    parts.push(out);
    const src = imageOf(p);
    if (src) {
      const img = el('img');
      img.src = src;
      img.alt = (p.friendly_name || p.id) + ' picture';
      img.style.maxWidth = '100%';
      parts.push(img);
    }
    if (p.job) {
      const j = p.job;
      parts.push(el('h3', '', 'Job'), table(['', ''], [['Name', j.name], ['Status', word(j.status)],
        ['Progress', Math.floor(j.progress) + '%'], ['Owner', j.owner || ''], ['Started', at(j.started_at)],
        ['Finish', at(j.eta)], ['Left', j.time_remaining ? duration(j.time_remaining) : '']]));
    }
    const rows = (p.extruders || []).map((e, i) => ['Extruder ' + (i + 1), [e.print_core, e.material, e.brand, e.color]
      .filter(Boolean).join(' · '), e.hotend_temperature != null ? Math.round(e.hotend_temperature) + ' °C' : '',
      e.material_remaining != null ? e.material_remaining + '%' : '']);
    if (p.build_plate) {
      rows.push(['Build plate', p.build_plate.type || '', p.build_plate.temperature != null ?
        Math.round(p.build_plate.temperature) + ' °C' : '', '']);
    }
    parts.push(el('h3', '', 'Hardware'), table(['', 'What', 'Temperature', 'Remaining'], rows));
    if (c.queue && c.queue.length) {
      parts.push(el('h3', '', 'Queue of ' + (c.friendly_name || c.id)), table(['#', 'Job', 'Owner', ''],
        c.queue.map((q, i) => {
          let move = '';
          if (token && !wall && i > 0) {
            move = el('button', '', 'Move to top');
            move.type = 'button';
            move.addEventListener('click', () => act('clusters', c.id, {action: 'move_to_top', job: q.uuid}, out));
          }
          return [String(i + 1), q.name, q.owner || '', move];
        })));
    }
    const recent = (c.recently_completed || []).filter((r) => !r.printer || r.printer === p.friendly_name);
    if (recent.length) parts.push(el('h3', '', 'Recent jobs'), table(['Job', 'Result'], recent.map((r) => [r.name, r.result])));
    if (c.maintenance && c.maintenance.length) {
      parts.push(el('h3', '', 'Maintenance'), table(['Task', 'Due'],
        c.maintenance.map((m) => [m.code.replace(/_/g, ' '), m.due ? 'now' : at(m.due_date)])));
    }
    const st = S.statistics[p.id];
    if (st) {
      parts.push(el('h3', '', 'Last 30 days'), table(['', ''], [['Success rate', st.success_rate == null ? '–' : st.success_rate + '%'],
        ['Finished', String(st.jobs_finished)], ['Aborted', String(st.jobs_aborted)], ['Failed', String(st.jobs_failed)],
        ['Print time', duration(st.print_seconds)],
        ['Utilisation, 7 days', st.utilisation_7d == null ? '–' : st.utilisation_7d + '%'],
        ['Utilisation, 30 days', st.utilisation_30d == null ? '–' : st.utilisation_30d + '%']]));
    }
    const events = S.feed.filter((it) => it.printer === p.id).slice(-20).reverse();
    if (events.length) {
      const ol = el('ol');
      events.forEach((it) => ol.append(feedItem(it)));
      parts.push(el('h3', '', 'Events'), ol);
    }
    const raw = el('details');
    raw.append(el('summary', '', 'The whole state'), el('pre', '', JSON.stringify(p, null, 2)));
    parts.push(raw);
    body.replaceChildren(...parts);
  }

  // The "for how long" of every tile, once a minute.
  setInterval(() => { for (const p of S.printers.values()) tile(p); }, 60000);
  window.addEventListener('error', () => { hooks.errors++; });
  connect();
})();
