// The board, live: announcements from /events appear at once; the board re-reads itself
// shortly after (the state the announcement describes is stored right after it is said).
"use strict";
(function () {
  const board = document.getElementById("board");
  const news = document.getElementById("news");
  const empty = document.getElementById("news-empty");
  const live = document.getElementById("live");
  let timer = null;

  function setLive(state, text) {
    live.dataset.state = state;
    live.textContent = text;
  }

  function refresh() {
    timer = null;
    fetch(board.dataset.src, { headers: { Accept: "text/html" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(new Error("HTTP " + r.status)); })
      .then(function (html) {
        const doc = new DOMParser().parseFromString("<div>" + html + "</div>", "text/html");
        const fresh = doc.body.firstElementChild;
        // keep the freshest announcement per component shown until the server has it too
        const shown = {};
        board.querySelectorAll("tr[data-component] .news").forEach(function (el) {
          shown[el.closest("tr").dataset.component] = el.textContent;
        });
        fresh.querySelectorAll("tr[data-component] .news").forEach(function (el) {
          const was = shown[el.closest("tr").dataset.component];
          if (!el.textContent && was) { el.textContent = was; }
        });
        board.replaceChildren.apply(board, Array.from(fresh.childNodes));
      })
      .catch(function (err) { setLive("error", "could not refresh: " + err.message); });
  }

  function later(ms) {
    if (timer === null) { timer = setTimeout(refresh, ms); }
  }

  function announce(data) {
    const li = document.createElement("li");
    const when = new Date(data.at * 1000).toISOString().substring(11, 19);
    li.textContent = when + " " + (data.room ? "[" + data.room + "] " : "") + data.text;
    news.prepend(li);
    while (news.children.length > 30) { news.lastElementChild.remove(); }
    if (empty) { empty.hidden = true; }
    if (data.component && !(data.key || "").startsWith("alert:")) { // alerts: in their cell
      const row = board.querySelector('tr[data-component="' + CSS.escape(data.component) + '"]');
      if (row) { row.querySelector(".news").textContent = data.text; }
    }
  }

  const source = new EventSource("/events");
  source.addEventListener("open", function () { setLive("on", "live"); });
  source.addEventListener("error", function () { setLive("off", "reconnecting…"); });
  source.addEventListener("announce", function (e) {
    announce(JSON.parse(e.data));
    later(400);
  });
  source.addEventListener("resync", function () { later(0); });
  setInterval(function () { later(0); }, 30000); // ages and anything not announced
})();
