// The Rampart web console's only script (decision 0052). Progressive enhancement: every page
// and every action works without it. It never builds markup from page data, so it cannot turn
// device-controlled text into elements.
'use strict';

document.addEventListener('DOMContentLoaded', () => {
  // Filter forms submit as soon as a choice changes.
  for (const select of document.querySelectorAll('form[data-autosubmit] select')) {
    select.addEventListener('change', () => select.form.requestSubmit());
  }
  // A campaign page follows the campaign's progress (server-sent events): counts change in
  // place; a new status reloads the page, whose buttons are then the ones the status allows.
  const live = document.querySelector('[data-live]');
  if (live && 'EventSource' in window) {
    const source = new EventSource(live.dataset.live);
    source.addEventListener('progress', (event) => {
      const progress = JSON.parse(event.data);
      if (progress.status !== live.dataset.initialStatus) {
        source.close();
        window.location.reload();
        return;
      }
      const waves = (progress.waves || []).map((wave, i) => [String(i), wave]);
      if (progress.total) waves.push(['total', progress.total]);
      for (const [key, wave] of waves) {
        const row = document.querySelector(`#waves tr[data-wave="${key}"]`);
        if (!row) continue;
        for (const cell of row.querySelectorAll('[data-field]')) {
          const field = cell.dataset.field;
          if (field === 'progress') {
            cell.max = Math.max(wave.devices, 1);
            cell.value = wave.succeeded + wave.failed;
          } else {
            cell.textContent = wave[field] ?? '';
          }
        }
      }
    });
  }
  // Irreversible actions ask first.
  for (const form of document.querySelectorAll('form[data-confirm]')) {
    form.addEventListener('submit', (event) => {
      if (!window.confirm(form.dataset.confirm)) {
        event.preventDefault();
      }
    });
  }
});
