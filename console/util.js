// Small DOM and formatting helpers shared by the pages.

// h('td', {class: 'num'}, 'text', child...): an element. Attributes starting
// with "on" are listeners; false/null attributes are left out.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === false || v === null || v === undefined) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// A table of `rows` (tr elements) under `columns` ({label, cls}). With
// stack, each row becomes a card of "label value" lines on a narrow screen.
export function table(caption, columns, rows, { stack = false } = {}) {
  if (stack) {
    for (const tr of rows) {
      [...tr.children].forEach((cell, i) => {
        if (columns[i]) cell.dataset.label = columns[i].label;
      });
    }
  }
  return h(
    'div',
    { class: 'table-wrap' },
    h(
      'table',
      { class: stack ? 'stack' : null },
      caption ? h('caption', {}, caption) : null,
      h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col', class: c.cls || null }, c.label)))),
      h('tbody', {}, rows),
    ),
  );
}

export function badge(state) {
  return h('span', { class: `badge b-${state}` }, state);
}

export function time(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return h('time', { datetime: iso, title: iso }, d.toLocaleString());
}

export function ago(iso) {
  if (!iso) return '';
  const s = (Date.now() - new Date(iso).getTime()) / 1000;
  if (s < 60) return `${Math.max(0, Math.round(s))} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

export function seconds(v) {
  if (v === undefined || v === null) return '';
  if (v < 1) return `${(v * 1000).toFixed(0)} ms`;
  if (v < 120) return `${v.toFixed(1)} s`;
  if (v < 7200) return `${(v / 60).toFixed(1)} min`;
  return `${(v / 3600).toFixed(1)} h`;
}

export const num = (n) => (n === undefined || n === null ? '' : Number(n).toLocaleString('en'));

export const short = (id) => (id ? `${id.slice(0, 8)}…${id.slice(-4)}` : '');

// The glob of herald's filters: '*' any run, '?' one character.
export function globMatch(pattern, text) {
  let re = '^';
  for (const c of pattern) {
    if (c === '*') re += '.*';
    else if (c === '?') re += '.';
    else re += c.replace(/[.+^$(){}|[\]\\]/g, '\\$&');
  }
  return new RegExp(re + '$', 's').test(text);
}

export function notice(kind, text) {
  return h('div', { class: `notice ${kind}`, role: kind === 'bad' ? 'alert' : 'status' }, text);
}

// Asks the operator to confirm (the page's <dialog>); resolves true or false.
export function confirmAction(title, text, okLabel) {
  const dlg = document.getElementById('confirm');
  document.getElementById('confirm-title').textContent = title;
  document.getElementById('confirm-text').textContent = text;
  document.getElementById('confirm-ok').textContent = okLabel;
  return new Promise((resolve) => {
    dlg.addEventListener('close', () => resolve(dlg.returnValue === 'ok'), { once: true });
    dlg.returnValue = 'cancel';
    dlg.showModal();
  });
}

// The hash route's query: '#/log?type=a' -> URLSearchParams.
export function hashQuery() {
  const q = location.hash.indexOf('?');
  return new URLSearchParams(q >= 0 ? location.hash.slice(q + 1) : '');
}
