// A running deploy: its log grows and its steps and state change as they happen.
"use strict";
(function () {
  const box = document.getElementById("deploy");
  const log = document.getElementById("log");
  const live = document.getElementById("live");
  const source = new EventSource(box.dataset.stream);

  function text(id, value) { document.getElementById(id).textContent = value; }

  source.addEventListener("open", function () { live.dataset.state = "on"; live.textContent = "live"; });
  source.addEventListener("error", function () {
    if (live.textContent !== "finished") { live.dataset.state = "off"; live.textContent = "reconnecting…"; }
  });
  source.addEventListener("log", function (e) {
    const atBottom = window.innerHeight + window.scrollY >= document.body.scrollHeight - 4;
    log.append(document.createTextNode(JSON.parse(e.data).text));
    if (atBottom) { window.scrollTo(0, document.body.scrollHeight); }
  });
  source.addEventListener("state", function (e) {
    const s = JSON.parse(e.data);
    text("state", s.state);
    text("elapsed", s.elapsed);
    text("result", s.result ? " · " + s.result : "");
    document.querySelector(".deploy-state").className = "deploy-state s-" + s.state;
    const steps = document.getElementById("steps");
    steps.replaceChildren();
    s.steps.forEach(function (step) {
      const li = document.createElement("li");
      li.className = "st-" + step.status;
      const code = document.createElement("code");
      code.textContent = step.command;
      li.append(code, " — " + step.status + (step.detail ? " (" + step.detail + ")" : ""));
      steps.append(li);
    });
  });
  source.addEventListener("end", function () {
    source.close();
    live.dataset.state = "done";
    live.textContent = "finished";
  });
})();
