// The watch page: hls.js in low-latency mode, live badge, latency readout, a quality menu
// when the stream has renditions, recovery from network errors and 503s with backoff and
// jitter, an offline state that starts playing by itself, past broadcasts, viewer
// heartbeats and playback telemetry.
(function () {
  "use strict";
  const root = document.getElementById("watch");
  const video = document.getElementById("video");
  const offline = document.getElementById("offline");
  const reconnecting = document.getElementById("reconnecting");
  const badge = document.getElementById("live-badge");
  const vodBadge = document.getElementById("vod-badge");
  const backLive = document.getElementById("back-live");
  const viewersBox = document.getElementById("viewers-box");
  const viewersLabel = document.getElementById("viewers");
  const latencyLabel = document.getElementById("latency");
  const quality = document.getElementById("quality");
  const qualityBox = document.getElementById("quality-box");
  const channel = root.dataset.channel;
  const player = (window.golivePlayer = { hls: null, video: video, mode: "offline", retries: 0 });
  let pollTimer = null;
  let retryTimer = null;
  let liveAvailable = root.dataset.live === "1";

  // Which of the three states the page is in; the offline notice only when nothing plays.
  function show(mode) {
    badge.hidden = mode !== "live";
    vodBadge.hidden = mode !== "vod";
    offline.hidden = mode !== "offline";
    reconnecting.hidden = mode !== "retrying";
    viewersBox.hidden = !liveAvailable;
    backLive.hidden = !(mode === "vod" && liveAvailable);
  }

  function destroy() {
    if (player.hls) {
      player.hls.destroy();
      player.hls = null;
    }
  }

  // Retries inside hls.js: exponential backoff for playlists and parts (a 503 from an
  // origin shedding load, a dropped connection), before an error becomes fatal. hls.js
  // adds no jitter, so each page scales the delays by its own factor (0.5-1.5): a crowd
  // refused together retries spread out, not in waves.
  const RETRY = { maxNumRetry: 6, retryDelayMs: Math.round(500 * (0.5 + Math.random())),
    maxRetryDelayMs: 8000, backoff: "exponential" };
  function policy(timeout) {
    return { default: { maxTimeToFirstByteMs: timeout, maxLoadTimeMs: timeout * 2,
      timeoutRetry: RETRY, errorRetry: RETRY } };
  }

  function play(src, mode) {
    destroy();
    clearTimeout(retryTimer);
    player.mode = mode;
    stopPolling();
    if (window.Hls && window.Hls.isSupported()) {
      // lowLatencyMode follows EXT-X-PART and blocking reloads; hls.js aims at PART-HOLD-BACK.
      // maxLiveSyncPlaybackRate lets it play slightly fast to catch up after a stall or a
      // late join, so latency returns to the target instead of staying where it fell.
      const hls = new window.Hls({
        lowLatencyMode: true, backBufferLength: 30, maxLiveSyncPlaybackRate: 1.5,
        manifestLoadPolicy: policy(10000), playlistLoadPolicy: policy(10000),
        fragLoadPolicy: policy(10000),
      });
      player.hls = hls;
      hls.on(window.Hls.Events.MANIFEST_PARSED, function () {
        player.retries = 0;
        fillQualities(hls.levels);
        video.play().catch(function () {});
      });
      hls.on(window.Hls.Events.LEVEL_SWITCHED, function () { telemetry.switches += 1; });
      hls.on(window.Hls.Events.ERROR, function (_event, data) {
        if (!data.fatal) return;
        if (data.type === window.Hls.ErrorTypes.MEDIA_ERROR) {
          telemetry.errors.media += 1;
          hls.recoverMediaError();
          return;
        }
        telemetry.errors.network += 1;
        recover(src, mode, data);
      });
      hls.loadSource(src);
      hls.attachMedia(video);
    } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
      video.src = src; // Safari plays LL-HLS natively
      video.play().catch(function () {});
    }
    show(mode);
  }

  // A fatal network error (origin gone, 503s past hls.js's own retries): wait 1, 2, 4 …
  // up to 30 s, each randomised by ±50 % so viewers do not return in one wave, then try
  // again; a live stream that has ended meanwhile turns the page offline. A 503 that says
  // Retry-After (an origin at its held-request cap) starts from that many seconds.
  function recover(src, mode, data) {
    destroy();
    const base = retryAfter(data) || 1;
    const delay = Math.min(30, base * Math.pow(2, player.retries++)) * (0.5 + Math.random());
    player.retryDelay = delay;
    show("retrying");
    retryTimer = setTimeout(function () {
      if (mode !== "live") { play(src, mode); return; }
      status().then(function (live) {
        if (live) play(src, mode);
        else goOffline();
      }, function () { recover(src, mode); });
    }, delay * 1000);
  }

  function retryAfter(data) {
    const xhr = data && data.networkDetails;
    if (!xhr || typeof xhr.getResponseHeader !== "function") return 0;
    const seconds = parseFloat(xhr.getResponseHeader("Retry-After"));
    return seconds > 0 ? seconds : 0;
  }

  function fillQualities(levels) {
    quality.length = 1;
    levels.forEach(function (level, index) {
      const option = document.createElement("option");
      option.value = String(index);
      option.textContent = (level.height ? level.height + "p" : "source") +
        (level.bitrate ? " · " + Math.round(level.bitrate / 1000) + " kb/s" : "");
      quality.appendChild(option);
    });
    qualityBox.hidden = levels.length < 2; // a menu with one choice is no choice
  }

  quality.addEventListener("change", function () {
    if (player.hls) player.hls.currentLevel = Number(quality.value);
  });

  // True latency: now minus the program-date-time of the frame on screen (the wall clock
  // at which the ingest received it).
  function latency() {
    const hls = player.hls;
    if (!hls || !hls.playingDate || player.mode !== "live") return null;
    return (Date.now() - hls.playingDate.getTime()) / 1000;
  }
  player.latency = latency;
  setInterval(function () {
    const seconds = latency();
    latencyLabel.textContent = seconds === null ? "" : seconds.toFixed(1) + " s behind live";
  }, 500);

  function goOffline() {
    destroy();
    player.mode = "offline";
    liveAvailable = false;
    show("offline");
    startPolling();
  }

  function startPolling() {
    if (pollTimer) return;
    // 1.5-2.5 s apart: a crowd waiting for a stream does not ask in lockstep.
    pollTimer = setTimeout(function () {
      pollTimer = null;
      checkStatus();
      startPolling();
    }, 1500 + Math.random() * 1000);
  }

  function stopPolling() {
    if (pollTimer) clearTimeout(pollTimer);
    pollTimer = null;
  }

  function status() {
    return fetch(root.dataset.statusUrl, { cache: "no-store" })
      .then(function (response) { return response.json(); })
      .then(function (data) {
        liveAvailable = !!data.is_live;
        if (typeof data.viewers === "number") viewersLabel.textContent = String(data.viewers);
        return liveAvailable;
      });
  }

  function checkStatus() {
    status().then(function (live) {
      if (live && player.mode === "offline") play(root.dataset.liveSrc, "live");
      else if (player.mode === "vod") show("vod");
    }).catch(function () {});
  }

  document.querySelectorAll("a.vod").forEach(function (link) {
    link.addEventListener("click", function (event) {
      event.preventDefault();
      leave();
      play(link.dataset.src, "vod");
      startPolling(); // to offer "back to live" when the channel goes live
    });
  });
  backLive.addEventListener("click", function () { play(root.dataset.liveSrc, "live"); });

  video.addEventListener("ended", function () {
    if (player.mode === "live") goOffline();
  });

  // --- Viewer heartbeats: a random id per tab, every 10 s while live video plays. ---
  const tab = (function () {
    const bytes = new Uint8Array(12);
    crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  })();
  player.tab = tab;
  let counted = false;
  function beat() {
    if (player.mode !== "live" || video.paused) { leave(); return; }
    fetch("/viewers/heartbeat", {
      method: "POST", body: JSON.stringify({ channel: channel, tab: tab }),
      headers: { "Content-Type": "text/plain" }, keepalive: true,
    }).then(function (response) { return response.json(); })
      .then(function (data) {
        counted = !!data.live;
        if (data.live) viewersLabel.textContent = String(data.viewers);
      }).catch(function () {});
  }
  function leave() {
    if (!counted) return;
    counted = false;
    navigator.sendBeacon("/viewers/heartbeat", JSON.stringify({ channel: channel, tab: tab, leave: true }));
  }
  video.addEventListener("playing", function () { if (!counted) beat(); });
  setInterval(beat, 10000);

  // --- Telemetry: latency samples, stalls, rendition switches, in batches. ---
  const telemetry = { latency: [], stalls: [], switches: 0, errors: { network: 0, media: 0 } };
  let stalledAt = null;
  video.addEventListener("waiting", function () { if (stalledAt === null) stalledAt = performance.now(); });
  video.addEventListener("playing", function () {
    if (stalledAt !== null && video.currentTime > 0) telemetry.stalls.push((performance.now() - stalledAt) / 1000);
    stalledAt = null;
  });
  setInterval(function () {
    const seconds = latency();
    if (seconds !== null && telemetry.latency.length < 60) telemetry.latency.push(Math.round(seconds * 1000) / 1000);
  }, 2000);
  function flush(beacon) {
    if (!telemetry.latency.length && !telemetry.stalls.length && !telemetry.switches) return;
    const body = JSON.stringify(telemetry);
    telemetry.latency = []; telemetry.stalls = []; telemetry.switches = 0;
    telemetry.errors = { network: 0, media: 0 };
    if (beacon) navigator.sendBeacon("/viewers/telemetry", body);
    else fetch("/viewers/telemetry", { method: "POST", body: body, headers: { "Content-Type": "text/plain" } }).catch(function () {});
  }
  player.flushTelemetry = flush;
  setInterval(flush, 30000);
  window.addEventListener("pagehide", function () { leave(); flush(true); });

  if (liveAvailable) play(root.dataset.liveSrc, "live");
  else { show("offline"); startPolling(); }
})();
