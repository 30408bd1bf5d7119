// The Rampart web console's only script (decision 0050). Progressive enhancement: every page
// and every action works without it. It never builds markup from page data, so it cannot turn
// device-controlled text into elements.
'use strict';

document.addEventListener('DOMContentLoaded', () => {
  // Filter forms submit as soon as a choice changes.
  for (const select of document.querySelectorAll('form[data-autosubmit] select')) {
    select.addEventListener('change', () => select.form.requestSubmit());
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
