// The watch page: hls.js in low-latency mode, live badge, latency readout, quality menu,
// an offline state that starts playing by itself, and past broadcasts.
(function () {
  "use strict";
  const root = document.getElementById("watch");
  const video = document.getElementById("video");
  const offline = document.getElementById("offline");
  const badge = document.getElementById("live-badge");
  const latencyLabel = document.getElementById("latency");
  const quality = document.getElementById("quality");
  const player = (window.golivePlayer = { hls: null, video: video, mode: "offline" });
  let pollTimer = null;
  let retryTimer = null;
  let retries = 0;

  function setLive(live) {
    badge.hidden = !live;
    offline.hidden = live;
  }

  function destroy() {
    if (player.hls) {
      player.hls.destroy();
      player.hls = null;
    }
  }

  function play(src, mode) {
    destroy();
    player.mode = mode;
    stopPolling();
    if (retryTimer) clearTimeout(retryTimer);
    retryTimer = null;
    if (window.Hls && window.Hls.isSupported()) {
      // lowLatencyMode follows EXT-X-PART and blocking reloads; hls.js aims at PART-HOLD-BACK.
      // maxLiveSyncPlaybackRate lets it play slightly fast to catch up after a stall or a
      // late join, so latency returns to the target instead of staying where it fell.
      const hls = new window.Hls({
        lowLatencyMode: true, backBufferLength: 30, maxLiveSyncPlaybackRate: 1.5,
      });
      player.hls = hls;
      hls.on(window.Hls.Events.MANIFEST_PARSED, function () {
        fillQualities(hls.levels);
        video.play().catch(function () {});
      });
      hls.on(window.Hls.Events.FRAG_BUFFERED, function () { retries = 0; });
      hls.on(window.Hls.Events.ERROR, function (_event, data) {
        if (!data.fatal) return;
        if (mode === "live" && data.response && data.response.code === 503) {
          backOff(src, data);
          return;
        }
        if (data.type === window.Hls.ErrorTypes.MEDIA_ERROR) {
          hls.recoverMediaError();
          return;
        }
        if (mode === "live") goOffline();
      });
      hls.loadSource(src);
      hls.attachMedia(video);
    } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
      video.src = src; // Safari plays LL-HLS natively
      video.play().catch(function () {});
    }
    setLive(mode === "live");
  }

  // A 503 means the edge or the origin is shedding load: come back later, and not all
  // together. Exponential from Retry-After (else 1 s), at most 30 s, with jitter, so a
  // crowd that failed at the same moment returns spread out instead of all at once.
  function backOff(src, data) {
    let base = 1;
    const xhr = data.networkDetails;
    if (xhr && typeof xhr.getResponseHeader === "function") {
      const after = parseFloat(xhr.getResponseHeader("Retry-After"));
      if (after > 0) base = after;
    }
    const delay = Math.min(30, base * Math.pow(2, retries)) * (0.5 + Math.random() / 2);
    retries += 1;
    destroy();
    player.mode = "retrying";
    player.retryDelay = delay;
    retryTimer = setTimeout(function () { play(src, "live"); }, delay * 1000);
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
    setLive(false);
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

  function checkStatus() {
    fetch(root.dataset.statusUrl, { cache: "no-store" })
      .then(function (response) { return response.json(); })
      .then(function (status) {
        if (status.is_live) play(root.dataset.liveSrc, "live");
      })
      .catch(function () {});
  }

  document.querySelectorAll("a.vod").forEach(function (link) {
    link.addEventListener("click", function (event) {
      event.preventDefault();
      play(link.dataset.src, "vod");
    });
  });

  video.addEventListener("ended", function () {
    if (player.mode === "live") goOffline();
  });

  if (root.dataset.live === "1") play(root.dataset.liveSrc, "live");
  else startPolling();
})();
