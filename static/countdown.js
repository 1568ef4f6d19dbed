// Keeps every running SLA countdown ticking. The server renders the right text and colour;
// this only redoes the same arithmetic each second (see src/sla/pages.rs, Countdown::of).
(function () {
  "use strict";
  var SECOND = 1000, MINUTE = 60 * SECOND, HOUR = 60 * MINUTE, DAY = 24 * HOUR;

  function span(ms) {
    ms = Math.max(0, ms);
    var d = Math.floor(ms / DAY), h = Math.floor((ms % DAY) / HOUR);
    var m = Math.floor((ms % HOUR) / MINUTE), s = Math.floor((ms % MINUTE) / SECOND);
    if (d > 0) return d + "d " + h + "h";
    if (h > 0) return h + "h " + m + "m";
    if (m > 0) return m + "m " + s + "s";
    return s + "s";
  }

  function tick() {
    var now = Date.now();
    document.querySelectorAll(".countdown[data-state='running']").forEach(function (el) {
      var due = Number(el.dataset.dueMs), duration = Number(el.dataset.durationMs);
      var left = due - now;
      el.classList.remove("normal", "amber", "red");
      if (left <= 0) {
        el.textContent = "breached " + span(-left) + " ago";
        el.classList.add("red");
      } else {
        el.textContent = span(left) + " left";
        el.classList.add(left / Math.max(1, duration) < 0.25 ? "amber" : "normal");
      }
    });
  }

  tick();
  setInterval(tick, SECOND);
})();
