// Chat: one WebSocket per page. Messages are drawn with textContent only (never as HTML),
// so "<script>" is shown as text; links become clickable only when the room allows it,
// and then only http(s) links, opened without the opener and marked nofollow/ugc.
(function () {
  "use strict";
  const root = document.getElementById("chat");
  if (!root) return;
  const list = document.getElementById("chat-messages");
  const status = document.getElementById("chat-status");
  const modesLabel = document.getElementById("chat-modes");
  const notice = document.getElementById("chat-notice");
  const form = document.getElementById("chat-form");
  const input = document.getElementById("chat-input");
  const modTools = document.getElementById("chat-mod");
  const viewersLabel = document.getElementById("viewers");
  const slug = root.dataset.slug;
  const MAX_SHOWN = 200;
  const chat = (window.goliveChat = { socket: null, me: null, moderator: false, state: {}, refused: [] });
  let linksAllowed = root.dataset.links === "1";
  let attempt = 0;
  let nonce = 0;
  let noticeTimer = null;

  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const socket = new WebSocket(scheme + location.host + "/ws/chat/" + encodeURIComponent(slug));
    chat.socket = socket;
    status.textContent = "connecting…";
    socket.onopen = function () { attempt = 0; status.textContent = ""; };
    socket.onmessage = function (event) {
      let frame;
      try { frame = JSON.parse(event.data); } catch (e) { return; }
      handle(frame);
    };
    socket.onclose = function (event) {
      if (chat.socket !== socket) return;
      if (event.code === 4404) { status.textContent = "no chat here"; return; }
      // Backoff with jitter, so a restarted server is not hit by every page at once.
      const delay = Math.min(30000, 1000 * Math.pow(2, attempt++)) * (0.5 + Math.random());
      status.textContent = "reconnecting…";
      setTimeout(connect, delay);
    };
  }

  function handle(frame) {
    switch (frame.t) {
      case "hello":
        chat.me = frame.user;
        chat.moderator = !!frame.moderator;
        if (modTools) modTools.hidden = !chat.moderator;
        root.classList.toggle("moderating", chat.moderator);
        break;
      case "history":
        list.textContent = "";
        frame.messages.forEach(add);
        break;
      case "msg": add(frame); break;
      case "del": remove(function (li) { return li.dataset.id === String(frame.id); }); break;
      case "purge": remove(function (li) { return li.dataset.user === frame.user; }); break;
      case "state": setState(frame); break;
      case "viewers": if (viewersLabel) viewersLabel.textContent = String(frame.n); break;
      case "refused": chat.refused.push(frame); show(frame.reason, true); break;
      case "notice": show(frame.text, false); break;
    }
  }

  function add(message) {
    const li = document.createElement("li");
    li.dataset.id = String(message.id);
    li.dataset.user = message.user;
    const name = document.createElement("span");
    name.className = "name role-" + message.role;
    name.textContent = message.user;
    li.appendChild(name);
    li.appendChild(document.createTextNode(": "));
    const text = document.createElement("span");
    text.className = "text";
    appendText(text, message.text);
    li.appendChild(text);
    if (chat.moderator && message.user !== chat.me) li.appendChild(modButtons(message));
    else if (chat.moderator) li.appendChild(modButtons(message, true));
    list.appendChild(li);
    while (list.children.length > MAX_SHOWN) list.removeChild(list.firstChild);
    list.scrollTop = list.scrollHeight;
  }

  const LINK = /\bhttps?:\/\/[^\s<>"']+/g;
  function appendText(node, text) {
    if (!linksAllowed) { node.textContent = text; return; }
    let last = 0;
    text.replace(LINK, function (url, at) {
      node.appendChild(document.createTextNode(text.slice(last, at)));
      const a = document.createElement("a");
      a.href = url; // the pattern only matches http(s): no javascript: URLs
      a.textContent = url;
      a.rel = "nofollow noopener noreferrer ugc";
      a.target = "_blank";
      node.appendChild(a);
      last = at + url.length;
      return url;
    });
    node.appendChild(document.createTextNode(text.slice(last)));
  }

  function modButtons(message, ownOnly) {
    const box = document.createElement("span");
    box.className = "mod";
    box.appendChild(button("✕", "Delete", function () { send({ t: "del", id: message.id }); }));
    if (!ownOnly) {
      box.appendChild(button("⏱", "Time out for 10 minutes", function () {
        const reason = window.prompt("Time out " + message.user + " for 10 minutes. Reason (shown to them):", "") ;
        if (reason !== null) send({ t: "timeout", user: message.user, seconds: 600, reason: reason });
      }));
      box.appendChild(button("⛔", "Ban", function () {
        const reason = window.prompt("Ban " + message.user + " from this chat. Reason:", "");
        if (reason !== null) send({ t: "ban", user: message.user, reason: reason });
      }));
    }
    return box;
  }

  function button(label, title, action) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "link";
    b.textContent = label;
    b.title = title;
    b.addEventListener("click", action);
    return b;
  }

  function remove(match) {
    Array.prototype.slice.call(list.children).forEach(function (li) {
      if (match(li)) li.remove();
    });
  }

  function setState(state) {
    chat.state = state;
    linksAllowed = !!state.links;
    const parts = [];
    if (state.slow) parts.push("slow mode " + state.slow + " s");
    if (state.followers !== null && state.followers !== undefined) parts.push("followers only");
    if (state.age) parts.push("accounts older than " + state.age + " min");
    modesLabel.textContent = parts.join(" · ");
    if (modTools) {
      document.getElementById("mod-slow").value = String(state.slow || 0);
      document.getElementById("mod-followers").value = state.followers === null || state.followers === undefined ? "" : String(state.followers);
      document.getElementById("mod-age").value = String(state.age || 0);
      document.getElementById("mod-links").checked = !!state.links;
    }
  }

  function show(text, isError) {
    notice.textContent = text;
    notice.classList.toggle("error", isError);
    notice.hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(function () { notice.hidden = true; }, 8000);
  }

  function send(frame) {
    frame.nonce = String(++nonce);
    if (chat.socket && chat.socket.readyState === WebSocket.OPEN) {
      chat.socket.send(JSON.stringify(frame));
      return true;
    }
    show("Not connected: trying again…", true);
    return false;
  }
  chat.send = send;

  if (form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      const text = input.value.trim();
      if (!text) return;
      if (send({ t: "send", text: text })) input.value = "";
    });
  }
  if (modTools) {
    modTools.addEventListener("change", function () {
      const followers = document.getElementById("mod-followers").value;
      send({
        t: "modes",
        slow: Number(document.getElementById("mod-slow").value),
        followers: followers === "" ? null : Number(followers),
        age: Number(document.getElementById("mod-age").value),
        links: document.getElementById("mod-links").checked,
      });
    });
  }
  connect();
})();
