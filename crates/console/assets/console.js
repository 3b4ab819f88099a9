// Rampart console: the little behaviour plain HTML lacks. No inline handlers anywhere
// (the CSP forbids them), so everything is wired here by data attributes.
(function () {
  "use strict";
  // <button data-confirm="Refund this payment?">: ask before a destructive action.
  document.addEventListener("submit", function (event) {
    var button = event.submitter;
    var message = (button && button.getAttribute("data-confirm")) ||
      event.target.getAttribute("data-confirm");
    if (message && !window.confirm(message)) {
      event.preventDefault();
    }
  });
  // <button data-copy="#id">: copy a secret shown once to the clipboard.
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (!button || !navigator.clipboard) { return; }
    var source = document.querySelector(button.getAttribute("data-copy"));
    if (source) {
      navigator.clipboard.writeText(source.textContent.trim()).then(function () {
        button.textContent = button.getAttribute("data-copied") || "Copied";
      });
    }
  });
})();
