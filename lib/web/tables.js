// Narrow screens (lib/web, served under <page>/common/): below 600 px base.css draws each row of
// a data table as a small card, one line per cell, each cell headed by its column's name. This
// module gives every cell that name (data-label, from the table's <th>), again whenever rows
// are drawn or the language changes the headers. Tables with class "compact" (forms) are left
// as they are.
function label(table) {
  const heads = [...table.querySelectorAll('thead th')].map((th) => th.textContent.trim());
  for (const tr of table.querySelectorAll('tbody tr')) {
    [...tr.children].forEach((td, i) => {
      const want = heads[i] || '';
      if (td.dataset.label !== want) td.dataset.label = want;
    });
  }
}

function labelAll() {
  for (const table of document.querySelectorAll('table:not(.compact)')) label(table);
}

let pending = false;
const observer = new MutationObserver(() => {
  if (pending) return;
  pending = true;
  queueMicrotask(() => {
    pending = false;
    labelAll();
  });
});

function start() {
  labelAll();
  // data-label changes are attributes: only childList and text changes are watched, so the
  // labelling does not wake itself up.
  observer.observe(document.body, { childList: true, subtree: true, characterData: true });
}

if (document.readyState === 'loading') {
  document.addEventListener('DOMContentLoaded', start);
} else {
  start();
}
