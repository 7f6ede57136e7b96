// Warren console: live updates and copy buttons. The pages work without
// this script; with it, a page that follows live changes (body[data-live])
// fetches itself again when the controller reports a change and swaps its
// <main> in place, so online state, paths and the queue move on their own.
"use strict";

(function () {
  function refresh() {
    fetch(window.location.href, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        if (!r.ok || r.redirected) { throw new Error("status " + r.status); }
        return r.text();
      })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var next = doc.getElementById("main");
        var main = document.getElementById("main");
        // Do not replace a form someone is typing into.
        var active = document.activeElement;
        if (active && main.contains(active) && /^(INPUT|TEXTAREA|SELECT)$/.test(active.tagName)) {
          return;
        }
        if (next && main) {
          main.replaceChildren.apply(main, Array.prototype.slice.call(next.childNodes).map(function (n) {
            return document.importNode(n, true);
          }));
          document.body.dataset.refreshed = String(Date.now());
          wireCopies();
        }
      })
      .catch(function () { /* the next change tries again */ });
  }

  function follow(url) {
    var pending = null;
    var source = new EventSource(url);
    source.addEventListener("change", function () {
      if (pending) { return; }
      pending = setTimeout(function () { pending = null; refresh(); }, 250);
    });
    source.addEventListener("ready", function () {
      document.body.dataset.live = "connected";
    });
  }

  function wireCopies() {
    if (!navigator.clipboard) { return; }
    document.querySelectorAll("button.copy-button").forEach(function (b) {
      b.hidden = false;
      if (b.dataset.wired) { return; }
      b.dataset.wired = "1";
      b.addEventListener("click", function () {
        navigator.clipboard.writeText(b.dataset.copy).then(function () { b.textContent = "Copied"; });
      });
    });
  }

  // Approve and revoke without leaving the page: the form is posted with
  // fetch (same origin, so the browser sends our Origin; the form token
  // goes along) and the page refreshes in place. Without this script the
  // form posts as usual.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.classList || !form.classList.contains("inline-action") || !window.fetch) { return; }
    event.preventDefault();
    fetch(form.action, {
      method: "POST",
      credentials: "same-origin",
      body: new URLSearchParams(new FormData(form)),
    }).then(function (r) {
      if (!r.ok) {
        return r.text().then(function (html) {
          var doc = new DOMParser().parseFromString(html, "text/html");
          var reason = doc.getElementById("reason");
          window.alert(reason ? reason.textContent : "Refused (" + r.status + ")");
        });
      }
      refresh();
    });
  });

  document.addEventListener("DOMContentLoaded", function () {
    var url = document.body.dataset.live;
    if (url && window.EventSource) { follow(url); }
    wireCopies();
  });
})();
