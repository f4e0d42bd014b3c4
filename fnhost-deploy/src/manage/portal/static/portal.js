// The fnhost portal's script: copy buttons, masked values shown on
// request, confirmations. Values are put into the page as text, never as
// HTML.
"use strict";

function copyText(text, button) {
  const done = () => {
    const label = button.textContent;
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = label; }, 1500);
  };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(done, () => fallbackCopy(text, done));
  } else {
    fallbackCopy(text, done);
  }
}

function fallbackCopy(text, done) {
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.className = "offscreen";
  document.body.appendChild(area);
  area.select();
  try { document.execCommand("copy"); done(); } catch (e) { /* the text stays selectable */ }
  area.remove();
}

async function secretOf(cell) {
  if (cell.dataset.value !== undefined) return cell.dataset.value;
  const resp = await fetch(cell.dataset.secretUrl, { credentials: "same-origin", cache: "no-store" });
  if (!resp.ok) throw new Error(await resp.text());
  const value = await resp.text();
  cell.dataset.value = value;
  return value;
}

document.addEventListener("click", async (event) => {
  const button = event.target.closest("button");
  if (!button) return;
  if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) {
    event.preventDefault();
    return;
  }
  if (button.classList.contains("copy")) {
    copyText(button.dataset.copy, button);
    return;
  }
  const cell = button.parentElement.querySelector(".secret");
  if (!cell) return;
  try {
    if (button.classList.contains("reveal")) {
      if (button.textContent === "Hide") {
        cell.textContent = "••••••••";
        button.textContent = "Show";
      } else {
        cell.textContent = await secretOf(cell);
        button.textContent = "Hide";
      }
    } else if (button.classList.contains("copy-secret")) {
      copyText(await secretOf(cell), button);
    }
  } catch (e) {
    cell.textContent = "cannot read: " + e.message;
  }
});

// Files: upload the chosen file as the request body; the server makes a
// new deployment and answers a line of text.
document.addEventListener("click", async (event) => {
  const button = event.target.closest("button.upload-go");
  if (!button) return;
  const box = button.closest(".upload");
  const result = box.querySelector(".upload-result");
  const file = box.querySelector("input[type=file]").files[0];
  if (!file) { result.textContent = "Choose a file first."; return; }
  const unzip = box.querySelector("#upload-unzip").checked;
  const dir = box.dataset.dir;
  const path = unzip ? dir : (dir ? dir + "/" : "") + file.name;
  const url = box.dataset.uploadUrl + "?path=" + encodeURIComponent(path) + (unzip ? "&unzip=1" : "");
  button.disabled = true;
  result.textContent = "Uploading…";
  try {
    const resp = await fetch(url, { method: "POST", body: file, credentials: "same-origin" });
    result.textContent = (await resp.text()).trim();
    if (resp.ok) setTimeout(() => window.location.reload(), 800);
  } catch (e) {
    result.textContent = "The upload failed: " + e.message;
  } finally {
    button.disabled = false;
  }
});

// Log stream: one EventSource a page, closed when the page goes away; the
// browser reconnects by itself and sends Last-Event-ID, so nothing is
// lost or repeated. Lines are appended as text, at most 2,000 kept.
(function () {
  const pre = document.getElementById("logstream");
  if (!pre) return;
  const state = document.querySelector(".stream-state");
  const pause = document.querySelector(".stream-pause");
  let paused = false;
  const held = [];
  const show = (line) => {
    pre.appendChild(document.createTextNode(line + "\n"));
    while (pre.childNodes.length > 2000) pre.removeChild(pre.firstChild);
    pre.scrollTop = pre.scrollHeight;
  };
  const source = new EventSource(pre.dataset.eventsUrl);
  source.onopen = () => { state.textContent = "connected"; };
  source.onerror = () => { state.textContent = "reconnecting…"; };
  source.addEventListener("log", (e) => {
    const l = JSON.parse(e.data);
    const line = l.time + " " + l.text;
    if (paused) held.push(line); else show(line);
  });
  source.addEventListener("gap", (e) => show("… " + e.data));
  pause.addEventListener("click", () => {
    paused = !paused;
    pause.textContent = paused ? "Resume" : "Pause";
    state.textContent = paused ? "paused" : "connected";
    if (!paused) held.splice(0).forEach(show);
  });
  document.querySelector(".stream-clear").addEventListener("click", () => { pre.textContent = ""; });
  window.addEventListener("pagehide", () => source.close());
})();
