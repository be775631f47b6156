// Keeps a page current without a reload, a build step or a CDN: every few seconds it fetches
// the same page again and swaps in the parts marked data-live (matched by id), so what a form
// is being typed into is left alone; a countdown (data-countdown, seconds) ticks every second.
// The body's data-updated is the time of the last swap (the tests read it).
(function () {
  "use strict";
  var every = 5000;
  function swap(html) {
    var fresh = new DOMParser().parseFromString(html, "text/html");
    document.querySelectorAll("[data-live]").forEach(function (old) {
      var now = old.id ? fresh.getElementById(old.id) : null;
      if (now && now.innerHTML !== old.innerHTML) {
        old.innerHTML = now.innerHTML;
      }
    });
    document.body.setAttribute("data-updated", String(Date.now()));
  }
  function refresh() {
    fetch(location.href, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (text) { if (text) { swap(text); } })
      .catch(function () { /* the server is away: try again later */ })
      .then(function () { setTimeout(refresh, every); });
  }
  function tick() {
    document.querySelectorAll("[data-countdown]").forEach(function (el) {
      var left = Math.max(0, parseInt(el.getAttribute("data-countdown"), 10) - 1);
      el.setAttribute("data-countdown", String(left));
      el.textContent = left + " s";
    });
  }
  if (document.querySelector("[data-live]")) {
    setTimeout(refresh, every);
    setInterval(tick, 1000);
  }
})();
