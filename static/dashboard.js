// The streamer dashboard: live health every 2 s, the preview player, copy and show buttons.
(function () {
  "use strict";
  const root = document.getElementById("dashboard");
  const preview = document.getElementById("preview");
  const previewOffline = document.getElementById("preview-offline");
  const warningsBox = document.getElementById("warnings");
  const dash = (window.goliveDashboard = { hls: null, last: null, live: false });

  function text(id, value) { document.getElementById(id).textContent = value; }

  function startPreview(src) {
    if (dash.hls) dash.hls.destroy();
    dash.hls = null;
    if (!(window.Hls && window.Hls.isSupported())) { preview.src = src; return; }
    const hls = new window.Hls({ lowLatencyMode: true, backBufferLength: 10 });
    hls.on(window.Hls.Events.MANIFEST_PARSED, function () { preview.play().catch(function () {}); });
    hls.on(window.Hls.Events.ERROR, function (_e, data) {
      if (data.fatal) { hls.destroy(); if (dash.hls === hls) dash.hls = null; }
    });
    hls.loadSource(src);
    hls.attachMedia(preview);
    dash.hls = hls;
    previewOffline.hidden = true;
  }

  function render(data) {
    dash.last = data;
    document.getElementById("dash-live").hidden = !data.live;
    document.getElementById("dash-offline").hidden = !!data.live;
    warningsBox.textContent = "";
    if (!data.live) {
      if (dash.live && dash.hls) { dash.hls.destroy(); dash.hls = null; }
      dash.live = false;
      previewOffline.hidden = false;
      ["h-bitrate", "h-fps", "h-keyframe", "h-lag", "h-late", "h-resolution", "h-codecs",
        "h-duration", "h-updated"].forEach(function (id) { text(id, "–"); });
      text("dash-viewers", "0");
      return;
    }
    if (!dash.live || !dash.hls) startPreview(preview.dataset.src);
    dash.live = true;
    const h = data.health || {};
    text("h-bitrate", h.bitrate_kbps !== undefined ? Math.round(h.bitrate_kbps).toLocaleString() + " kb/s" : "–");
    text("h-fps", h.frame_rate !== undefined ? h.frame_rate.toFixed(1) + " fps" : "–");
    text("h-keyframe", h.keyframe_interval_ms ? (h.keyframe_interval_ms / 1000).toFixed(1) + " s" : "waiting for a second keyframe");
    text("h-lag", h.lag_ms !== undefined ? (h.lag_ms / 1000).toFixed(1) + " s" : "–");
    text("h-late", h.timestamp_regressions !== undefined ? String(h.timestamp_regressions) : "–");
    text("h-resolution", data.resolution || "–");
    text("h-codecs", [data.video_codec, data.audio_codec].filter(Boolean).join(", ") || "–");
    text("h-duration", h.media_duration_ms !== undefined ? (h.media_duration_ms / 1000).toFixed(1) + " s" : "–");
    text("h-updated", data.last_heartbeat_at ? new Date(data.last_heartbeat_at).toLocaleTimeString() : "–");
    text("dash-viewers", String(data.viewers));
    text("dash-peak", String(data.peak_viewers));
    if (data.reconnecting) addWarning("reconnecting", "Your encoder disconnected: the stream waits for it to reconnect.");
    data.warnings.forEach(function (w) { addWarning(w.code, w.text); });
  }

  function addWarning(code, message) {
    const p = document.createElement("p");
    p.className = "warning";
    p.dataset.code = code;
    p.textContent = message;
    warningsBox.appendChild(p);
  }

  function poll() {
    fetch(root.dataset.healthUrl, { cache: "no-store", credentials: "same-origin" })
      .then(function (response) { return response.json(); })
      .then(render)
      .catch(function () {});
  }
  poll();
  setInterval(poll, 2000);

  document.querySelectorAll("button.copy").forEach(function (button) {
    button.addEventListener("click", function () {
      const field = document.getElementById(button.dataset.copy);
      const done = function () { button.textContent = "Copied"; setTimeout(function () { button.textContent = "Copy"; }, 2000); };
      if (navigator.clipboard && window.isSecureContext) navigator.clipboard.writeText(field.value).then(done);
      else { const type = field.type; field.type = "text"; field.select(); document.execCommand("copy"); field.type = type; done(); }
    });
  });
  const showKey = document.getElementById("show-key");
  if (showKey) {
    showKey.addEventListener("click", function () {
      const field = document.getElementById(showKey.dataset.target);
      const hidden = field.type === "password";
      field.type = hidden ? "text" : "password";
      showKey.textContent = hidden ? "Hide" : "Show";
    });
  }
  document.querySelectorAll("a.vod").forEach(function (link) {
    link.addEventListener("click", function (event) {
      event.preventDefault();
      startPreview(link.dataset.src);
    });
  });
})();
