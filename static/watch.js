// The watch page: hls.js in low-latency mode, live badge, latency readout, a quality menu
// when the stream has renditions (and renditions a broadcast gains while it plays, taken
// in without a break), recovery from network errors and 503s with backoff and jitter, an
// offline state that starts playing by itself, past broadcasts, viewer heartbeats and
// playback telemetry.
(function () {
  "use strict";
  const root = document.getElementById("watch");
  let video = document.getElementById("video"); // the element on screen (see swapIn)
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
    hls: null, video: video, mode: "offline", retries: 0, restarts: [], errors: [],
    swaps: [],
  });
  let pollTimer = null;
  let retryTimer = null;
  let renditionTimer = null;
  let standby = null; // a second player getting ready to take over (see refresh)
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
    dropStandby();
    clearTimeout(renditionTimer);
    renditionTimer = null;
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
      player.hls = start(src, mode, video);
      steadySince = performance.now();
      settled = false;
      if (mode === "live") watchRenditions(src);
    } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
      video.src = src; // Safari plays LL-HLS natively
      video.play().catch(function () {});
    }
    show(mode);
  }

  // An hls.js player of ``src`` on ``element``: the page's (player.hls) or a standby one.
  function start(src, mode, element, estimate) {
    // lowLatencyMode follows EXT-X-PART and blocking reloads; hls.js aims at PART-HOLD-BACK.
    // Catching up after a late start or a stall is keepUp()'s (below), so hls.js's own is
    // off (maxLiveSyncPlaybackRate 1). A stall moves hls.js's target back by
    // liveSyncOnStallIncrease (at most a target duration): by a part's worth, not its
    // default second, which would double a sub-second latency after one hiccup.
    const config = {
      lowLatencyMode: true, backBufferLength: 30, maxLiveSyncPlaybackRate: 1,
      liveSyncOnStallIncrease: STALL_STEP_S,
      manifestLoadPolicy: policy(10000), playlistLoadPolicy: policy(10000),
      fragLoadPolicy: policy(10000),
    };
    // A standby player starts from the bandwidth the player on screen measured: from
    // hls.js's default guess (500 kb/s) it started on the lowest rendition and, once swapped
    // in, switched up mid-segment, which broke the picture for 1-1.4 s.
    if (estimate > 0) config.abrEwmaDefaultEstimate = estimate;
    const hls = new window.Hls(config);
    element.addEventListener("waiting", function () {
      if (hls === player.hls) steadySince = performance.now();
    });
    hls.on(window.Hls.Events.MANIFEST_PARSED, function () {
      if (hls === player.hls) fillQualities(hls.levels);
      element.play().catch(function () {});
    });
    // Media arriving, not a playlist, ends an outage: an edge may still hand out the
    // multivariant playlist while the origin behind it fails every media request.
    hls.on(window.Hls.Events.FRAG_BUFFERED, function (_event, data) {
      if (hls === player.hls) player.retries = 0;
      markBufferedParts(hls, data.frag);
    });
    hls.on(window.Hls.Events.LEVEL_SWITCHED, function () {
      if (hls === player.hls) telemetry.switches += 1;
    });
    hls.on(window.Hls.Events.FRAG_LOADED, function (_event, data) {
      notePartLoaded(hls, data);
      switchWhereSegmentsStart(hls, data);
    });
    hls.on(window.Hls.Events.ERROR, function (_event, data) {
      if (player.errors.length < 100) {
        player.errors.push({ at: Date.now(), type: data.type, details: data.details,
          fatal: !!data.fatal, standby: hls !== player.hls });
      }
      if (hls !== player.hls) { // a standby player: the one on screen carries on
        if (data.fatal && standby && standby.hls === hls) dropStandby();
        return;
      }
      if (data.details === window.Hls.ErrorDetails.FRAG_GAP) lostChosen(hls);
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
    hls.attachMedia(element);
    return hls;
  }

  // A live broadcast can gain renditions while it plays (a transcode slot came free: its
  // quality ladder starts) or lose one. hls.js reads the multivariant playlist once, so
  // the page reads it again every 3-5 s (cacheable for a second: an edge answers a crowd)
  // and, when the renditions listed differ from the player's, plays the new list in a
  // second player on a hidden video element and swaps it in once it plays: the picture
  // never stops, and the Quality menu then lists the new renditions.
  const RENDITIONS_EVERY_MS = 4000;
  function watchRenditions(src) {
    clearTimeout(renditionTimer);
    renditionTimer = setTimeout(function () {
      renditionTimer = null;
      const hls = player.hls;
      if (!hls || player.mode !== "live") return;
      fetch(src).then(function (response) {
        return response.ok ? response.text() : null;
      }).then(function (text) {
        if (hls !== player.hls) return; // replaced meanwhile
        if (text !== null && hls.levels.length && !sameNames(listedNames(text), hls.levels)) {
          refresh(src);
        }
      }).catch(function () {}).then(function () {
        if (hls === player.hls) watchRenditions(src);
      });
    }, RENDITIONS_EVERY_MS * (0.75 + Math.random() / 2));
  }

  function listedNames(text) {
    const names = [];
    text.split("\n").forEach(function (line) {
      if (line.indexOf("#EXT-X-STREAM-INF:") !== 0) return;
      const match = /(?:^|,)NAME="([^"]*)"/.exec(line.slice(18));
      names.push(match ? match[1] : line);
    });
    return names;
  }

  function sameNames(names, levels) {
    const current = levels.map(function (level) { return level.name || ""; });
    return names.length === current.length &&
      names.slice().sort().join("\n") === current.slice().sort().join("\n");
  }

  // The standby player: muted and invisible until it has played STANDBY_STEADY_S without
  // a stall (its start's joins are over: it has media buffered and its own live position;
  // swapped in sooner, a start that stalls would stall on screen); given up after 15 s.
  const STANDBY_STEADY_S = 1.5;
  function refresh(src) {
    if (standby || !(window.Hls && window.Hls.isSupported())) return;
    const element = document.createElement("video");
    element.className = "standby";
    element.muted = true;
    element.playsInline = true;
    element.setAttribute("aria-hidden", "true");
    video.parentNode.insertBefore(element, video.nextSibling);
    const hls = start(src, "live", element, player.hls && player.hls.bandwidthEstimate);
    const began = performance.now();
    let playedFrom = null;
    const ready = function () {
      if (!standby || standby.hls !== hls || element.paused) return;
      if (playedFrom === null) playedFrom = element.currentTime;
      else if (element.currentTime - playedFrom >= STANDBY_STEADY_S) swapIn(began);
    };
    const stalled = function () { playedFrom = null; };
    element.addEventListener("timeupdate", ready);
    element.addEventListener("waiting", stalled);
    element.addEventListener("seeking", stalled);
    standby = { hls: hls, element: element, ready: ready, stalled: stalled,
      timer: setTimeout(dropStandby, 15000) };
  }

  function unwatchStandby(spare) {
    clearTimeout(spare.timer);
    spare.element.removeEventListener("timeupdate", spare.ready);
    spare.element.removeEventListener("waiting", spare.stalled);
    spare.element.removeEventListener("seeking", spare.stalled);
  }

  function dropStandby() {
    if (!standby) return;
    unwatchStandby(standby);
    standby.hls.destroy();
    standby.element.remove();
    standby = null;
  }

  function swapIn(began) {
    const next = standby;
    unwatchStandby(next);
    standby = null;
    const old = video, oldHls = player.hls;
    next.element.muted = old.muted;
    next.element.volume = old.volume;
    next.element.controls = old.controls;
    next.element.removeAttribute("aria-hidden");
    next.element.className = old.className;
    old.removeAttribute("id");
    next.element.id = "video";
    video = player.video = next.element;
    player.hls = next.hls;
    watchElement(video);
    old.remove(); // the new picture is on screen: the old one goes
    if (oldHls) oldHls.destroy();
    fillQualities(next.hls.levels);
    quality.value = "-1";
    player.swaps.push({ at: Date.now(), readyAfterMs: Math.round(performance.now() - began),
      levels: next.hls.levels.length });
    watchRenditions(next.hls.url);
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

  // A rendition chosen in the menu plays from where a segment starts. Only a segment's
  // first part begins with a key frame (INDEPENDENT=YES), so hls.js, switching between
  // two parts, loads the new rendition again from the start of the segment under way,
  // part by part; meanwhile nothing more of the old one is loaded. Measured here, 100 ms
  // from the origin, switching at once (currentLevel, which also flushes the buffer, or
  // nextLevel) stalled 0.3-2 s at every switch. So the current rendition is kept (and
  // automatic switching turned off) until the first part of the next segment has loaded;
  // the chosen one then loads from that segment on, its first part again: one part's
  // download, well inside the second or so hls.js keeps buffered at the live edge.
  let chosen = null;
  quality.addEventListener("change", function () {
    const hls = player.hls;
    if (!hls) return;
    const level = Number(quality.value);
    kept = level < 0 ? null : { hls: hls, level: level, lost: false, checking: false };
    if (level < 0 || !hls.media || hls.media.readyState < 2) {
      chosen = null; // automatic, or nothing plays yet: at once
      hls.nextLevel = level;
      return;
    }
    chooseAtSegmentStart(hls, level);
  });
  function chooseAtSegmentStart(hls, level) {
    chosen = { hls: hls, level: level };
    hls.loadLevel = hls.loadLevel; // manual from now, on the rendition being loaded
  }

  // The rendition a viewer chose stays theirs. When it has a gap (its transcoder
  // restarted: EXT-X-GAP), hls.js plays a rendition without one there and turns automatic
  // (its error controller sets loadLevel to -1), while the menu still shows the choice.
  // So the page then reads the chosen rendition's playlist every RETURN_CHECK_MS (the bare
  // playlist: an edge answers it from cache) and, once its newest segment is whole, goes
  // back to it where a segment starts, as a choice in the menu does.
  const RETURN_CHECK_MS = 2000;
  let kept = null;
  player.returns = 0;
  function lostChosen(hls) {
    if (kept && kept.hls === hls) kept.lost = true;
  }
  setInterval(function () {
    const hls = player.hls;
    if (!kept || !kept.lost || kept.checking) return;
    if (kept.hls !== hls) { kept = null; return; } // another player: the menu was reset
    const level = hls.levels[kept.level];
    if (!level) { kept = null; return; }
    const wanted = kept;
    wanted.checking = true;

    const abort = new AbortController(); // a look that never answers must not stop the next
    const deadline = setTimeout(function () { abort.abort(); }, RETURN_CHECK_MS);
    fetch(level.uri, { credentials: "same-origin", signal: abort.signal }).then(function (response) {
      return response.ok ? response.text() : "";
    }).then(function (text) {
      clearTimeout(deadline);
      wanted.checking = false;
      if (kept !== wanted || player.hls !== wanted.hls || !liveEdgeHasNoGap(text)) return;
      wanted.lost = false;
      player.returns += 1;
      chooseAtSegmentStart(wanted.hls, wanted.level);
    }, function () { clearTimeout(deadline); wanted.checking = false; });
  }, RETURN_CHECK_MS);
  // Whole again: its newest complete segment is no gap, nor any part listed after it.
  function liveEdgeHasNoGap(text) {
    const lines = text.split("\n");
    let last = -1;
    for (let i = lines.length; i--; ) {
      if (lines[i].indexOf("#EXTINF") === 0) { last = i; break; }
    }
    if (last < 0 || (last > 0 && lines[last - 1].indexOf("#EXT-X-GAP") === 0)) return false;
    for (let i = last + 1; i < lines.length; i++) {
      if (lines[i].indexOf("#EXT-X-PART:") === 0 && lines[i].indexOf("GAP=YES") >= 0) return false;
    }
    return true;
  }
  // hls.js 1.7 loads parts that are already out in one go (after a switch of rendition
  // it goes back to the segment's first part), and from such a run marks only the last
  // part as loaded. At the segment's end it looks for the others, which are buffered and
  // which it will not load again: the picture of a segment ends a B-frame delay after its
  // sound (both are cut at the same decode time), so the buffer ends ~50 ms short of the
  // segment and hls.js does not move on. Playback stopped there for ~3 s, until the
  // segment's parts left the playlist. So the page notes the parts hls.js loaded, per
  // rendition, and as each part is buffered marks those of its segment that the video
  // element holds as loaded (the end of a segment's last part may lie up to
  // PART_END_SLACK_S beyond the buffer). Only parts loaded from that rendition: a span
  // the buffer holds from another rendition must still be loaded from this one.
  const PART_END_SLACK_S = 0.12;
  const loadedParts = new WeakMap(); // player -> "level:sn" -> part indexes loaded
  player.partsMarked = 0;
  function segmentKey(frag) { return frag.level + ":" + frag.sn; }
  function notePartLoaded(hls, data) {
    if (!data.part || data.frag.type !== "main") return;
    let loaded = loadedParts.get(hls);
    if (!loaded) loadedParts.set(hls, (loaded = new Map()));
    const key = segmentKey(data.frag);
    let indexes = loaded.get(key);
    if (!indexes) {
      if (loaded.size > 16) loaded.clear(); // a few segments' worth is enough
      loaded.set(key, (indexes = new Set()));
    }
    indexes.add(data.part.index);
  }
  function markBufferedParts(hls, frag) {
    const media = hls.media;
    if (!media || !frag || frag.type !== "main") return;
    const loaded = loadedParts.get(hls);
    const indexes = loaded && loaded.get(segmentKey(frag));
    const level = hls.levels[frag.level];
    const parts = level && level.details && level.details.partList;
    if (!indexes || !parts) return;
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i];
      if (part.fragment.sn !== frag.sn || part.loaded || part.gap) continue;
      if (!indexes.has(part.index)) continue;
      const end = part.end - Math.min(PART_END_SLACK_S, part.duration / 2);
      if (!holds(media.buffered, part.start, end)) continue;
      part.elementaryStreams.audiovideo = {
        startPTS: part.start, endPTS: part.end, startDTS: part.start, endDTS: part.end,
      };
      player.partsMarked += 1;
    }
  }
  function holds(ranges, start, end) {
    for (let i = 0; i < ranges.length; i++) {
      if (ranges.start(i) <= start + 0.01 && ranges.end(i) >= end) return true;
    }
    return false;
  }

  function switchWhereSegmentsStart(hls, data) {
    if (!chosen || chosen.hls !== hls || data.frag.type !== "main") return;
    if (data.part && data.part.index !== 0) return;
    const level = chosen.level;
    chosen = null;
    if (level !== data.frag.level) hls.loadLevel = level;
  }

  // Keeping up with the live edge. hls.js starts at the key frame at or before its target
  // position (up to a GOP, 2 s, behind), moves its target back by a step at every stall it
  // sees, for good (a start's joins and seeks count), and speeds playback up only with more
  // than a second buffered ahead, which a sub-second target never has. So every quarter
  // second:
  // - far behind (a tab back from the background), jump to hls.js's live sync position
  //   when it is buffered (a jump at every start stalled the rendition swaps and switches);
  // - otherwise more than CATCH_UP_S behind with something buffered ahead, play up to 1.25x
  //   (Chromium keeps the pitch) until within SETTLED_S;
  // - after steady playback (SETTLE_MS at the start, FORGIVE_MS later) hls.js's target
  //   returns to the playlist's PART-HOLD-BACK.
  function keepUp() {
    const hls = player.hls;
    const details = hls && hls.latestLevelDetails;
    if (!details || !details.live || player.mode !== "live" || video.paused) return;
    const steady = performance.now() - steadySince;
    const hold = details.partHoldBack;
    if (hold && hls.targetLatency > hold + 0.01 && steady > (settled ? FORGIVE_MS : SETTLE_MS)) {
      hls.targetLatency = hold;
    } else if (hold && hls.targetLatency < hold - 0.01) {
      hls.targetLatency = hold; // the broadcast gained its ladder: a longer hold-back
    }
    const behind = hls.latency - hls.targetLatency;
    const ranges = video.buffered;
    const ahead = ranges.length ? ranges.end(ranges.length - 1) - video.currentTime : 0;
    const sync = hls.liveSyncPosition;
    let rate = 1;
    if (sync !== null && sync > video.currentTime && sync < video.currentTime + ahead - 0.1 &&
        behind > JUMP_S) {
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

  // The video element's own events, for whichever element is on screen (see swapIn).
  function watchElement(element) {
    element.addEventListener("ended", function () {
      if (element === video && player.mode === "live") goOffline();
    });
    element.addEventListener("playing", function () {
      if (element === video && !counted) beat();
    });
    element.addEventListener("waiting", function () {
      if (element === video && stalledAt === null) stalledAt = performance.now();
    });
    element.addEventListener("playing", function () {
      if (element !== video) return;
      if (stalledAt !== null && element.currentTime > 0) {
        telemetry.stalls.push((performance.now() - stalledAt) / 1000);
      }
      stalledAt = null;
    });
  }

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
  setInterval(beat, 10000);

  // --- Telemetry: latency samples, stalls, rendition switches, in batches. ---
  const telemetry = { latency: [], stalls: [], switches: 0, errors: { network: 0, media: 0 } };
  let stalledAt = null;
  watchElement(video);
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
