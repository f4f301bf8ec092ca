// The player bar: one <audio> for the whole app, its controls, progress sync across devices, Media Session.

import { api, ApiError, isSignedIn, sendKeepalive } from "./api.js";
import { clock, say, toast } from "./dom.js";

const DEVICE_KEY = "audioverse.device_id";
const SAVE_EVERY_MS = 5000;
const SKIP_SECONDS = 30;
const LOCAL_PREFIX = "audioverse.position.";
const CURRENT_BOOK_KEY = "audioverse.current_book";

const $ = (id) => document.getElementById(id);

function deviceId() {
  let id = localStorage.getItem(DEVICE_KEY);
  if (!id) {
    id = crypto.randomUUID();
    localStorage.setItem(DEVICE_KEY, id);
  }
  return id;
}

// The last position this device reached, kept until the server has it: a reload or a lost request
// (a keepalive racing the next page's read) still resumes where the listener was.
function keepLocal(bookId, update) {
  localStorage.setItem(LOCAL_PREFIX + bookId, JSON.stringify(update));
}

function readLocal(bookId) {
  try {
    return JSON.parse(localStorage.getItem(LOCAL_PREFIX + bookId));
  } catch {
    return null;
  }
}

function sameUpdate(local, stored) {
  return Math.abs(local.position_seconds - stored.position_seconds) < 0.01 && local.playback_speed === stored.playback_speed;
}

class Player extends EventTarget {
  constructor() {
    super();
    this.audio = $("audio");
    this.book = null;
    this.chapters = [];
    this.duration = 0;
    this.sleepTimer = null;
    this.sleepAtChapterEnd = false;
    this.lastSaved = null;
    this.saveTimer = null;
    this.seeking = false;
    this.bind();
  }

  bind() {
    const audio = this.audio;
    $("play").addEventListener("click", () => this.toggle());
    $("back30").addEventListener("click", () => this.skip(-SKIP_SECONDS));
    $("fwd30").addEventListener("click", () => this.skip(SKIP_SECONDS));
    $("prev-chapter").addEventListener("click", () => this.previousChapter());
    $("next-chapter").addEventListener("click", () => this.nextChapter());
    const seek = $("seek");
    seek.addEventListener("input", () => {
      this.seeking = true;
      $("elapsed").textContent = clock(Number(seek.value));
    });
    seek.addEventListener("change", () => {
      this.seeking = false;
      this.seek(Number(seek.value));
    });
    $("speed").addEventListener("change", (event) => this.setSpeed(Number(event.target.value)));
    $("sleep").addEventListener("change", (event) => this.setSleep(event.target.value));
    $("add-bookmark").addEventListener("click", () => this.dispatchEvent(new Event("bookmark")));

    audio.addEventListener("timeupdate", () => this.tick());
    audio.addEventListener("play", () => this.playing(true));
    audio.addEventListener("pause", () => {
      this.playing(false);
      this.save();
    });
    audio.addEventListener("seeked", () => {
      if (this.sleepAtChapterEnd) this.sleepChapter = this.chapterIndexAt(audio.currentTime);
      this.save();
    });
    audio.addEventListener("ratechange", () => {
      $("speed").value = String(audio.playbackRate);
      this.updatePositionState();
    });
    audio.addEventListener("ended", () => this.save({ is_completed: true }));
    audio.addEventListener("error", () => this.recover());

    const leaving = () => this.save({ leaving: true });
    window.addEventListener("pagehide", leaving);
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "hidden") leaving();
    });
    this.mediaSession();
    // Pages leave room below for the bar, however tall it wraps at this width.
    new ResizeObserver(() => {
      document.documentElement.style.setProperty("--player-height", `${$("player").offsetHeight}px`);
    }).observe($("player"));
  }

  mediaSession() {
    if (!("mediaSession" in navigator)) return;
    const handlers = {
      play: () => this.audio.play(),
      pause: () => this.audio.pause(),
      seekbackward: (details) => this.skip(-(details.seekOffset || SKIP_SECONDS)),
      seekforward: (details) => this.skip(details.seekOffset || SKIP_SECONDS),
      seekto: (details) => this.seek(details.seekTime),
      previoustrack: () => this.previousChapter(),
      nexttrack: () => this.nextChapter(),
    };
    for (const [action, handler] of Object.entries(handlers)) {
      try {
        navigator.mediaSession.setActionHandler(action, handler);
      } catch {
        // An action this browser does not know: the others still work.
      }
    }
  }

  updatePositionState() {
    if (!("mediaSession" in navigator) || !navigator.mediaSession.setPositionState || !this.duration) return;
    try {
      navigator.mediaSession.setPositionState({
        duration: this.duration,
        playbackRate: this.audio.playbackRate,
        position: Math.min(this.audio.currentTime, this.duration),
      });
    } catch {
      // Position outside the duration while metadata loads.
    }
  }

  get position() {
    return this.audio.currentTime;
  }

  // After a reload: the book that was in the player comes back, paused where the listener left it.
  async restore() {
    const id = Number(localStorage.getItem(CURRENT_BOOK_KEY));
    if (!id || this.book) return;
    try {
      await this.load(await api(`/audiobooks/${id}/`));
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) localStorage.removeItem(CURRENT_BOOK_KEY);
    }
  }

  // Signing out empties the player; what this device kept of other books' places stays with it.
  close() {
    this.audio.pause();
    this.audio.removeAttribute("src");
    this.audio.load();
    this.book = null;
    localStorage.removeItem(CURRENT_BOOK_KEY);
    $("player").hidden = true;
    document.body.classList.remove("has-player");
  }

  isCurrent(bookId) {
    return this.book !== null && this.book.id === bookId;
  }

  // Loads a book into the player and moves to where the listener stopped, on any device.
  async load(book, { play = false, at = null } = {}) {
    if (this.isCurrent(book.id)) {
      if (at !== null) this.seek(at);
      if (play) await this.audio.play();
      return;
    }
    if (this.book) this.save();
    const playback = await api(`/audiobooks/${book.id}/playback/`);
    this.book = book;
    this.chapters = playback.chapters || [];
    this.duration = playback.duration_seconds;
    this.lastSaved = null;
    let start = playback.progress && !playback.progress.is_completed ? playback.progress.position_seconds : 0;
    const speed = (playback.progress && playback.progress.playback_speed) || playback.playback_speed || 1;
    const local = readLocal(book.id);
    if (local && playback.progress && sameUpdate(local, playback.progress)) {
      localStorage.removeItem(LOCAL_PREFIX + book.id); // the request sent while leaving got there
    } else if (local) {
      start = await this.reconcile(local, start);
    }
    if (at !== null) start = at;

    $("player").hidden = false;
    document.body.classList.add("has-player");
    $("player-title").textContent = book.title;
    $("player-title").href = `/books/${book.id}`;
    const coverImage = $("player-cover");
    coverImage.hidden = !book.cover_url;
    if (book.cover_url) coverImage.src = book.cover_url;
    $("seek").max = String(Math.floor(this.duration));

    localStorage.setItem(CURRENT_BOOK_KEY, String(book.id));
    this.audio.src = playback.stream_url;
    this.audio.defaultPlaybackRate = speed;
    this.audio.playbackRate = speed;
    $("speed").value = String(speed);
    await new Promise((resolve) => {
      this.audio.addEventListener("loadedmetadata", resolve, { once: true });
    });
    this.audio.currentTime = Math.min(start, this.duration);
    this.tick();
    if ("mediaSession" in navigator) {
      navigator.mediaSession.metadata = new MediaMetadata({
        title: book.title,
        artist: (book.authors || []).map((author) => author.name).join(", "),
        album: "AudioVerse",
        artwork: book.cover_url ? [{ src: book.cover_url, sizes: "512x512" }] : [],
      });
    }
    this.dispatchEvent(new Event("loaded"));
    if (play) await this.audio.play();
  }

  // A position this device kept but the server may not have: send it; the newest across devices wins.
  async reconcile(local, serverPosition) {
    try {
      const body = { ...local, client_sent_at: new Date().toISOString() };
      const stored = await api(`/progress/${this.book.id}/`, { method: "POST", body });
      localStorage.removeItem(LOCAL_PREFIX + this.book.id);
      return stored.position_seconds;
    } catch (error) {
      if (error instanceof ApiError && error.status === 409 && error.problem.progress) {
        localStorage.removeItem(LOCAL_PREFIX + this.book.id);
        return error.problem.progress.position_seconds;
      }
      return serverPosition;
    }
  }

  async recover() {
    // A stream URL expires: fetch a fresh one and continue from the same place.
    if (!this.book || !this.audio.error) return;
    const position = this.audio.currentTime;
    try {
      const playback = await api(`/audiobooks/${this.book.id}/playback/`);
      this.audio.src = playback.stream_url;
      this.audio.currentTime = position;
    } catch {
      toast("The audio could not be loaded.");
    }
  }

  toggle() {
    if (this.audio.paused) this.audio.play().catch(() => {});
    else this.audio.pause();
  }

  skip(seconds) {
    this.seek(this.audio.currentTime + seconds);
  }

  seek(seconds) {
    const target = Math.max(0, Math.min(seconds, this.duration || seconds));
    this.audio.currentTime = target;
    say(`Position ${clock(target)}`);
  }

  setSpeed(speed) {
    this.audio.playbackRate = speed;
    this.audio.defaultPlaybackRate = speed;
    say(`Speed ${speed}×`);
    this.save();
  }

  setSleep(value) {
    clearTimeout(this.sleepTimer);
    this.sleepAtChapterEnd = value === "chapter";
    const minutes = Number(value);
    if (minutes > 0) {
      this.sleepTimer = setTimeout(() => {
        this.audio.pause();
        $("sleep").value = "0";
        say("Sleep timer: paused");
      }, minutes * 60_000);
      say(`Sleep timer set for ${minutes} minutes`);
    } else if (this.sleepAtChapterEnd) {
      this.sleepChapter = this.chapterIndexAt(this.audio.currentTime);
      say("Sleep timer: pause at the end of this chapter");
    } else {
      say("Sleep timer off");
    }
  }

  chapterIndexAt(seconds) {
    let index = -1;
    this.chapters.forEach((chapter, i) => {
      if (seconds + 0.01 >= chapter.start_time_seconds) index = i;
    });
    return index;
  }

  currentChapter() {
    return this.chapters[this.chapterIndexAt(this.audio.currentTime)] || null;
  }

  previousChapter() {
    const index = this.chapterIndexAt(this.audio.currentTime);
    if (index < 0) return;
    const chapter = this.chapters[index];
    // Like a CD player: back to this chapter's start, or to the previous one when already there.
    const target = this.audio.currentTime - chapter.start_time_seconds > 3 || index === 0
      ? chapter.start_time_seconds
      : this.chapters[index - 1].start_time_seconds;
    this.seek(target);
  }

  nextChapter() {
    const next = this.chapters[this.chapterIndexAt(this.audio.currentTime) + 1];
    if (next) this.seek(next.start_time_seconds);
  }

  playing(isPlaying) {
    $("play").classList.toggle("is-playing", isPlaying);
    $("play").setAttribute("aria-label", isPlaying ? "Pause" : "Play");
    clearInterval(this.saveTimer);
    if (isPlaying) this.saveTimer = setInterval(() => this.save(), SAVE_EVERY_MS);
    if ("mediaSession" in navigator) navigator.mediaSession.playbackState = isPlaying ? "playing" : "paused";
    this.dispatchEvent(new Event("state"));
  }

  tick() {
    const now = this.audio.currentTime;
    if (!this.seeking) {
      $("seek").value = String(Math.floor(now));
      $("elapsed").textContent = clock(now);
    }
    $("remaining").textContent = `-${clock(this.duration - now)}`;
    const index = this.chapterIndexAt(now);
    const chapter = this.chapters[index];
    $("player-chapter").textContent = chapter ? chapter.title : "";
    // Only listening past the chapter's end stops it: a seek elsewhere makes that chapter the one to finish.
    if (this.sleepAtChapterEnd && this.audio.seeking) this.sleepChapter = index;
    if (this.sleepAtChapterEnd && index > this.sleepChapter && !this.audio.seeking && !this.audio.paused) {
      this.sleepAtChapterEnd = false;
      $("sleep").value = "0";
      this.audio.pause();
      say("Sleep timer: paused at the end of the chapter");
    }
    if (this.lastChapterIndex !== index) {
      this.lastChapterIndex = index;
      this.dispatchEvent(new Event("chapter"));
    }
    this.updatePositionState();
  }

  // Sends the position; a 409 means another device listened later: take its place.
  save({ is_completed = undefined, leaving = false } = {}) {
    if (!this.book || !isSignedIn() || !this.duration || this.audio.readyState === 0) return;
    const now = new Date().toISOString();
    const update = {
      position_seconds: Math.min(Math.round(this.audio.currentTime * 1000) / 1000, this.duration),
      playback_speed: this.audio.playbackRate,
      client_updated_at: now,
      client_sent_at: now,
      device_id: deviceId(),
    };
    if (is_completed) update.is_completed = true;
    const bookId = this.book.id;
    if (this.lastSaved && this.lastSaved.position_seconds === update.position_seconds
        && this.lastSaved.playback_speed === update.playback_speed && !is_completed) return;
    this.lastSaved = update;
    if (leaving) {
      keepLocal(bookId, update);
      sendKeepalive(`/progress/${bookId}/`, update);
      return;
    }
    api(`/progress/${bookId}/`, { method: "POST", body: update })
      .then(() => localStorage.removeItem(LOCAL_PREFIX + bookId))
      .catch((error) => {
        if (error instanceof ApiError && error.status === 409 && error.problem.progress) {
          if (this.isCurrent(bookId)) {
            const theirs = error.problem.progress.position_seconds;
            this.lastSaved = { ...update, position_seconds: theirs };
            this.audio.currentTime = theirs;
            say(`Moved to ${clock(theirs)}, where you listened on another device`);
          }
        } else if (!(error instanceof ApiError)) {
          keepLocal(bookId, update); // offline: the next load sends it
        }
      });
  }
}

export const player = new Player();
