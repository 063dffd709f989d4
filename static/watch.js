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
  const player = (window.golivePlayer = {
    hls: null, video: video, mode: "offline", retries: 0, restarts: [],
  });
  let pollTimer = null;
  let retryTimer = null;
  let liveAvailable = root.dataset.live === "1";
  // Latency keeping, seconds (see keepUp).
  const STALL_STEP_S = 0.2;
  const CATCH_UP_S = 0.1;
  const SETTLED_S = 0.03;
  const JUMP_S = 3;
  const SETTLE_MS = 3000;
  const FORGIVE_MS = 60000;
  let steadySince = performance.now();
  let settled = false;

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

  // Retries inside hls.js, for a blip (a dropped connection, a timeout): three quick ones,
  // 0.5, 1, 2 s apart, each randomised ×0.5–1.5. hls.js's own backoff has no jitter, so a
  // whole audience would retry in step; its shouldRetry hook is called right before it
  // reads the delay, so the delay is drawn there. A 503 is not retried here: the edge or
  // origin is shedding load and said when to come back (Retry-After), so the error goes
  // straight to recover().
  const RETRY_BASE_MS = 500;
  function retryPolicy() {
    return {
      maxNumRetry: 3, retryDelayMs: RETRY_BASE_MS, maxRetryDelayMs: 4000, backoff: "exponential",
      shouldRetry: function (config, count, isTimeout, response, retry) {
        if (response && response.code === 503) return false;
        config.retryDelayMs = RETRY_BASE_MS * (0.5 + Math.random());
        return retry;
      },
    };
  }
  function policy(timeout) {
    return { default: { maxTimeToFirstByteMs: timeout, maxLoadTimeMs: timeout * 2,
      timeoutRetry: retryPolicy(), errorRetry: retryPolicy() } };
  }

  function play(src, mode) {
    destroy();
    clearTimeout(retryTimer);
    player.mode = mode;
    stopPolling();
    if (window.Hls && window.Hls.isSupported()) {
      // lowLatencyMode follows EXT-X-PART and blocking reloads; hls.js aims at PART-HOLD-BACK.
      // Catching up after a late start or a stall is keepUp()'s (below), so hls.js's own is
      // off (maxLiveSyncPlaybackRate 1). A stall moves hls.js's target back by
      // liveSyncOnStallIncrease (at most a target duration): by a part's worth, not its
      // default second, which would double a sub-second latency after one hiccup.
      const hls = new window.Hls({
        lowLatencyMode: true, backBufferLength: 30, maxLiveSyncPlaybackRate: 1,
        liveSyncOnStallIncrease: STALL_STEP_S,
        manifestLoadPolicy: policy(10000), playlistLoadPolicy: policy(10000),
        fragLoadPolicy: policy(10000),
      });
      player.hls = hls;
      steadySince = performance.now();
      settled = false;
      hls.on(window.Hls.Events.MANIFEST_PARSED, function () {
        fillQualities(hls.levels);
        video.play().catch(function () {});
      });
      // Media arriving, not a playlist, ends an outage: an edge may still hand out the
      // multivariant playlist while the origin behind it fails every media request.
      hls.on(window.Hls.Events.FRAG_BUFFERED, function () { player.retries = 0; });
      hls.on(window.Hls.Events.LEVEL_SWITCHED, function () { telemetry.switches += 1; });
      hls.on(window.Hls.Events.ERROR, function (_event, data) {
        if (!data.fatal) return;
        if (data.type === window.Hls.ErrorTypes.MEDIA_ERROR) {
          telemetry.errors.media += 1;
          hls.recoverMediaError();
          return;
        }
        telemetry.errors.network += 1;
        recover(src, mode, retryAfter(data.networkDetails));
      });
      hls.loadSource(src);
      hls.attachMedia(video);
    } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
      video.src = src; // Safari plays LL-HLS natively
      video.play().catch(function () {});
    }
    show(mode);
  }

  // A fatal network error (origin gone, a 503, failures past hls.js's quick retries):
  // wait 1, 2, 4 … s, or Retry-After, 2 × Retry-After … when the response said, at most
  // 30 s; half of each wait fixed and half random ("equal jitter"), so viewers that failed
  // together come back spread out. Then try again; a live stream that has ended meanwhile
  // turns the page offline.
  function recover(src, mode, serverWaitMs) {
    destroy();
    clearTimeout(retryTimer);
    const nominal = Math.min(30000, (serverWaitMs || 1000) * Math.pow(2, player.retries++));
    const delay = nominal * (0.5 + Math.random() / 2);
    player.retryDelay = delay / 1000;
    player.restarts.push({ at: Date.now(), nominal: nominal, delay: delay, serverWaitMs: serverWaitMs || 0 });
    if (player.restarts.length > 50) player.restarts.shift();
    show("retrying");
    retryTimer = setTimeout(function () {
      if (mode !== "live") { play(src, mode); return; }
      status().then(function (live) {
        if (live) play(src, mode);
        else goOffline();
      }, function () { recover(src, mode); });
    }, delay);
  }

  // Retry-After (seconds) of the failed response, in ms; 0 when absent.
  function retryAfter(details) {
    let value = null;
    try {
      if (details && typeof details.getResponseHeader === "function") value = details.getResponseHeader("Retry-After");
      else if (details && details.headers && typeof details.headers.get === "function") value = details.headers.get("Retry-After");
    } catch (e) { value = null; }
    const seconds = Number(value);
    return value !== null && isFinite(seconds) && seconds > 0 ? seconds * 1000 : 0;
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

  // A hole in the buffer that playback is stuck at: hls.js jumps small holes and gap
  // segments it has not started, but not the rest of a segment whose first parts it
  // already played when that segment then became a gap (EXT-X-GAP: a transcoder
  // restarted mid-segment). Stalled for a second at the end of a buffered range with
  // media buffered further on, the playhead moves on to that media.
  const HOLE_STALL_MS = 1000;
  let holeCheckedTime = -1;
  let stuckSince = 0;
  setInterval(function () {
    const now = performance.now();
    // Not bailing out while seeking: hls.js's own nudge past the end of the buffer leaves
    // the element seeking into the hole for good.
    if (!player.hls || video.paused || video.currentTime !== holeCheckedTime) {
      holeCheckedTime = video.currentTime;
      stuckSince = now;
      return;
    }
    if (now - stuckSince < HOLE_STALL_MS) return;
    const at = video.currentTime;
    const ranges = video.buffered;
    for (let i = 0; i < ranges.length; i++) {
      if (ranges.start(i) <= at && ranges.end(i) - at > 0.2) return; // media ahead: no hole
    }
    for (let i = 0; i < ranges.length; i++) {
      const start = ranges.start(i);
      if (start > at && start - at < 10) {
        player.holesSkipped = (player.holesSkipped || 0) + 1;
        video.currentTime = start + 0.05;
        stuckSince = now;
        return;
      }
    }
  }, 250);

  quality.addEventListener("change", function () {
    if (player.hls) player.hls.currentLevel = Number(quality.value);
  });

  // Keeping up with the live edge. hls.js starts at the key frame at or before its target
  // position (up to a GOP, 2 s, behind), moves its target back by a step at every stall it
  // sees, for good (a start's joins and seeks count), and speeds playback up only with more
  // than a second buffered ahead, which a sub-second target never has. So every quarter
  // second:
  // - at the start, once what is buffered reaches hls.js's live sync position, jump there
  //   (Chromium decodes from the key frame in a blink); far behind later (a tab back from
  //   the background), likewise;
  // - otherwise more than CATCH_UP_S behind with something buffered ahead, play up to 1.25x
  //   (Chromium keeps the pitch) until within SETTLED_S;
  // - after steady playback (SETTLE_MS at the start, FORGIVE_MS later) hls.js's target
  //   returns to the playlist's PART-HOLD-BACK.
  video.addEventListener("waiting", function () { steadySince = performance.now(); });
  function keepUp() {
    const hls = player.hls;
    const details = hls && hls.latestLevelDetails;
    if (!details || !details.live || player.mode !== "live" || video.paused) return;
    const steady = performance.now() - steadySince;
    const hold = details.partHoldBack;
    if (hold && hls.targetLatency > hold + 0.01 && steady > (settled ? FORGIVE_MS : SETTLE_MS)) {
      hls.targetLatency = hold;
    }
    const behind = hls.latency - hls.targetLatency;
    const ranges = video.buffered;
    const ahead = ranges.length ? ranges.end(ranges.length - 1) - video.currentTime : 0;
    const sync = hls.liveSyncPosition;
    let rate = 1;
    if (sync !== null && sync > video.currentTime && sync < video.currentTime + ahead - 0.1 &&
        (behind > JUMP_S || (!settled && behind > 3 * CATCH_UP_S))) {
      video.currentTime = sync;
    } else if (ahead > 0.2 && (behind > CATCH_UP_S || (video.playbackRate > 1 && behind > SETTLED_S))) {
      rate = Math.min(1.25, 1 + behind / 2);
    }
    if (Math.abs(video.playbackRate - rate) > 0.01) video.playbackRate = rate;
    if (!settled && steady > SETTLE_MS && behind < CATCH_UP_S) settled = true;
  }
  setInterval(keepUp, 250);

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
  let quietUntil = 0; // after a 429: the server's Retry-After, not another beat
  function beat() {
    if (player.mode !== "live" || video.paused) { leave(); return; }
    if (Date.now() < quietUntil) return;
    fetch("/viewers/heartbeat", {
      method: "POST", body: JSON.stringify({ channel: channel, tab: tab }),
      headers: { "Content-Type": "text/plain" }, keepalive: true,
    }).then(function (response) {
      if (response.status === 429 || response.status === 503) {
        quietUntil = Date.now() + 1000 * (Number(response.headers.get("Retry-After")) || 60);
        return null;
      }
      return response.json();
    }).then(function (data) {
      if (!data) return;
      counted = !!data.live && data.counted !== false;
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
