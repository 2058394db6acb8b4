// digits-zoo serve: draw a digit, see what the model reads, collect the ones it gets wrong.
//
// Strokes are kept as lists of points in 0..1 coordinates, so the pad can be
// redrawn at any size (Undo, a turned phone). When a stroke ends the pad goes to
// the server as a PNG; the server converts it exactly as `digits-zoo predict`
// converts a picture and answers with the pixels the model saw, the predicted
// class and the probability of each class. Below the server's confidence threshold
// (or for a drawing too small to be a digit) the page says it is unsure and shows
// its best guess small. The digits marked Right or Wrong are counted, and the
// page adapts the model to them (`digits-zoo adapt`, run by the server) and
// switches to the new version once the server serves it.
"use strict";

(function () {
  const pad = document.getElementById("pad");
  const context = pad.getContext("2d");
  const seen = document.getElementById("seen");
  const seenCaption = document.getElementById("seen-caption");
  const predicted = document.getElementById("predicted");
  const confidence = document.getElementById("confidence");
  const bars = document.getElementById("bars");
  const status = document.getElementById("status");
  const chooser = document.getElementById("chooser");
  const select = document.getElementById("model");
  const undoButton = document.getElementById("undo");
  const clearButton = document.getElementById("clear");
  const rightButton = document.getElementById("right");
  const wrongButtons = document.getElementById("wrong");
  const about = document.getElementById("about");
  const collectedText = document.getElementById("collected");
  const adaptButton = document.getElementById("adapt");
  const adaptStatus = document.getElementById("adapt-status");
  const adaptCommand = document.getElementById("adapt-command");

  // The pen's width as a fraction of the pad's side.
  const PEN_WIDTH = 0.065;
  // A drawing whose ink spans less than this fraction of the pad both ways is a dot, not a
  // digit: the recipe would blow it up to a digit's size and the model read it as one.
  const SMALLEST_DIGIT = 0.15;
  // How often the page asks about a running adaptation, and how long it waits for the new
  // version to be served once written.
  const POLL_MS = 700;
  const SERVED_WITHIN_MS = 60000;

  const state = {
    models: [],
    model: null,
    strokes: [],
    drawing: null,
    pointerId: null,
    // Answers are numbered so that a late answer to an old drawing is dropped.
    asked: 0,
    shown: 0,
    reading: null,
    picture: null,
    adapting: false,
  };

  // Drawing.

  function fitPad() {
    const side = pad.getBoundingClientRect().width;
    const pixels = Math.max(1, Math.round(side * (window.devicePixelRatio || 1)));
    if (pad.width !== pixels || pad.height !== pixels) {
      pad.width = pixels;
      pad.height = pixels;
    }
    redraw();
  }

  function redraw() {
    context.fillStyle = "#ffffff";
    context.fillRect(0, 0, pad.width, pad.height);
    for (const stroke of state.strokes) {
      drawStroke(stroke, 0);
    }
  }

  function drawStroke(stroke, from) {
    const side = pad.width;
    context.strokeStyle = "#000000";
    context.fillStyle = "#000000";
    context.lineWidth = PEN_WIDTH * side;
    context.lineCap = "round";
    context.lineJoin = "round";
    if (stroke.length === 1) {
      context.beginPath();
      context.arc(stroke[0][0] * side, stroke[0][1] * side, (PEN_WIDTH * side) / 2, 0, 2 * Math.PI);
      context.fill();
      return;
    }
    context.beginPath();
    const start = Math.max(0, from - 1);
    context.moveTo(stroke[start][0] * side, stroke[start][1] * side);
    for (let i = start + 1; i < stroke.length; i++) {
      context.lineTo(stroke[i][0] * side, stroke[i][1] * side);
    }
    context.stroke();
  }

  function point(event) {
    const box = pad.getBoundingClientRect();
    const clamp = (value) => Math.min(1, Math.max(0, value));
    return [clamp((event.clientX - box.left) / box.width), clamp((event.clientY - box.top) / box.height)];
  }

  pad.addEventListener("pointerdown", (event) => {
    if (event.pointerType === "mouse" && event.button !== 0) return;
    if (state.drawing) return;
    event.preventDefault();
    pad.setPointerCapture(event.pointerId);
    state.pointerId = event.pointerId;
    state.drawing = [point(event)];
    state.strokes.push(state.drawing);
    drawStroke(state.drawing, 0);
    updateTools();
  });

  pad.addEventListener("pointermove", (event) => {
    if (!state.drawing || event.pointerId !== state.pointerId) return;
    event.preventDefault();
    const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
    const from = state.drawing.length;
    for (const each of events.length ? events : [event]) {
      state.drawing.push(point(each));
    }
    drawStroke(state.drawing, from);
  });

  function endStroke(event) {
    if (!state.drawing || event.pointerId !== state.pointerId) return;
    state.drawing = null;
    state.pointerId = null;
    read();
  }
  pad.addEventListener("pointerup", endStroke);
  pad.addEventListener("pointercancel", endStroke);

  undoButton.addEventListener("click", () => {
    state.strokes.pop();
    redraw();
    read();
  });

  clearButton.addEventListener("click", clear);

  function clear() {
    state.strokes = [];
    state.drawing = null;
    redraw();
    read();
  }

  document.addEventListener("keydown", (event) => {
    if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "z") {
      event.preventDefault();
      if (state.strokes.length) undoButton.click();
    }
  });

  function updateTools() {
    const empty = state.strokes.length === 0;
    undoButton.disabled = empty;
    clearButton.disabled = empty;
  }

  // Reading: the pad to the server, the answer onto the page.

  function pngOfPad() {
    return new Promise((resolve) => pad.toBlob(resolve, "image/png"));
  }

  function modelUrl(action) {
    return "api/models/" + encodeURIComponent(state.model.name) + "/" + action;
  }

  async function read() {
    updateTools();
    const number = ++state.asked;
    if (!state.strokes.length) {
      showReading(null);
      return;
    }
    const picture = await pngOfPad();
    try {
      const response = await fetch(modelUrl("draw"), {
        method: "POST",
        headers: { "Content-Type": "image/png" },
        body: picture,
      });
      const answer = await response.json();
      if (number !== state.asked) return;
      if (!response.ok) throw new Error(answer.error || response.statusText);
      state.picture = picture;
      showReading(answer);
      say("");
    } catch (error) {
      if (number !== state.asked) return;
      showReading(null);
      say("The server could not read the drawing: " + error.message, "error");
    }
  }

  function showReading(answer) {
    state.reading = answer;
    state.shown += 1;
    document.body.dataset.readings = String(state.shown);
    rightButton.disabled = !answer;
    for (const button of wrongButtons.querySelectorAll("button")) button.disabled = !answer;
    if (!answer) {
      state.picture = null;
      predicted.textContent = "?";
      predicted.classList.remove("unsure");
      confidence.textContent = "";
      document.body.dataset.unsure = "";
      showBars(null);
      showPixels(null);
      return;
    }
    if (answer.version !== state.model.version) showVersion(answer.version);
    const column = answer.classes.indexOf(answer.class);
    const sure = percent(answer.probabilities[column]);
    const small = inkExtent() < SMALLEST_DIGIT;
    const unsure = answer.unsure || small;
    document.body.dataset.unsure = unsure ? (small ? "small" : "true") : "false";
    predicted.classList.toggle("unsure", unsure);
    if (unsure) {
      predicted.textContent = "unsure";
      confidence.textContent = small
        ? "too small to read: draw the digit larger (best guess " + answer.class + ", " + sure + ")"
        : "best guess " + answer.class + ", " + sure + " sure (below " + percent(answer.min_confidence) + ")";
    } else {
      predicted.textContent = String(answer.class);
      confidence.textContent = sure + " sure";
    }
    showBars(answer);
    showPixels(answer);
  }

  // The larger side of the drawing's ink, pen width included, as a fraction of the pad.
  function inkExtent() {
    const points = state.strokes.flat();
    if (!points.length) return 0;
    const xs = points.map((p) => p[0]);
    const ys = points.map((p) => p[1]);
    const span = Math.max(Math.max(...xs) - Math.min(...xs), Math.max(...ys) - Math.min(...ys));
    return span + PEN_WIDTH;
  }

  function buildBars(classes) {
    bars.replaceChildren();
    for (const label of classes) {
      const item = document.createElement("li");
      item.dataset.class = String(label);
      const digit = document.createElement("span");
      digit.className = "digit";
      digit.textContent = String(label);
      const bar = document.createElement("span");
      bar.className = "bar";
      const fill = document.createElement("span");
      fill.className = "fill";
      bar.append(fill);
      const value = document.createElement("span");
      value.className = "pct";
      value.textContent = "";
      item.append(digit, bar, value);
      bars.append(item);
    }
  }

  function showBars(answer) {
    const items = bars.querySelectorAll("li");
    items.forEach((item, index) => {
      const probability = answer ? answer.probabilities[index] : 0;
      item.dataset.probability = answer ? String(probability) : "";
      item.classList.toggle("top", Boolean(answer) && answer.classes[index] === answer.class);
      item.querySelector(".fill").style.width = (100 * probability).toFixed(1) + "%";
      item.querySelector(".pct").textContent = answer ? percent(probability) : "";
      item.setAttribute("aria-label", item.dataset.class + ": " + (answer ? percent(probability) : "no reading"));
    });
  }

  function showPixels(answer) {
    const [height, width] = state.model ? state.model.image_shape : [8, 8];
    seen.width = width;
    seen.height = height;
    const seenContext = seen.getContext("2d");
    const image = seenContext.createImageData(width, height);
    for (let i = 0; i < width * height; i++) {
      // Ink dark on white, as on the pad.
      const ink = answer ? answer.pixels[i] / answer.pixel_max : 0;
      const grey = Math.round(255 * (1 - ink));
      image.data.set([grey, grey, grey, 255], 4 * i);
    }
    seenContext.putImageData(image, 0, 0);
  }

  // One decimal, never rounded up to a certainty the model did not give: 0.99998 is
  // ">99.9%", not "100.0%" (and 0.00002 is "<0.1%", not "0.0%").
  function percent(probability) {
    if (probability >= 1) return "100%";
    if (probability <= 0) return "0%";
    if (probability > 0.999) return ">99.9%";
    if (probability < 0.001) return "<0.1%";
    return (Math.floor(1000 * probability) / 10).toFixed(1) + "%";
  }

  function say(text, kind) {
    status.textContent = text;
    status.className = kind || "";
  }

  // Collecting: the drawing and its true label into the server's CSV.

  async function collect(label) {
    if (!state.reading || !state.picture) return;
    rightButton.disabled = true;
    for (const button of wrongButtons.querySelectorAll("button")) button.disabled = true;
    try {
      const response = await fetch(modelUrl("collect") + "?label=" + encodeURIComponent(label), {
        method: "POST",
        headers: { "Content-Type": "image/png" },
        body: state.picture,
      });
      const answer = await response.json();
      if (!response.ok) throw new Error(answer.error || response.statusText);
      const rows = answer.rows === 1 ? "1 digit" : answer.rows + " digits";
      say("Saved as a " + answer.label + " in " + answer.file + " (" + rows + "). Draw the next one.", "saved");
      document.body.dataset.collected = String(answer.rows);
      showCollected(answer.rows);
      state.strokes = [];
      redraw();
      updateTools();
      state.asked += 1;
      showReading(null);
    } catch (error) {
      say("Not saved: " + error.message, "error");
      showReading(state.reading);
    }
  }

  rightButton.addEventListener("click", () => collect(state.reading.class));

  function buildWrongButtons(classes) {
    wrongButtons.replaceChildren();
    for (const label of classes) {
      const button = document.createElement("button");
      button.type = "button";
      button.id = "wrong-" + label;
      button.textContent = String(label);
      button.title = "Wrong: the right digit is " + label;
      button.setAttribute("aria-label", "Wrong: " + label);
      button.disabled = true;
      button.addEventListener("click", () => collect(label));
      wrongButtons.append(button);
    }
  }

  // Adapting: `digits-zoo adapt` on the collected digits, run by the server.

  function showCollected(rows) {
    state.model.collected = rows;
    collectedText.textContent =
      rows === 0 ? "No digits collected yet." :
      (rows === 1 ? "1 digit" : rows + " digits") + " collected in " + state.model.collect + ".";
    adaptButton.disabled = state.adapting || rows < 2;
    adaptButton.title = rows < 2 ? "Collect at least 2 digits first" : "";
  }

  function sayAdapt(text, kind) {
    adaptStatus.textContent = text;
    adaptStatus.className = kind || "";
  }

  function adaptUrl() {
    return modelUrl("adapt");
  }

  async function startAdapting() {
    adaptButton.disabled = true;
    try {
      const response = await fetch(adaptUrl(), { method: "POST" });
      const answer = await response.json();
      if (!response.ok) throw new Error(answer.error || response.statusText);
      followAdapting(state.model.name);
    } catch (error) {
      sayAdapt("Not started: " + error.message, "error");
      showCollected(state.model.collected);
    }
  }

  const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // Polls the adaptation until it ends, then waits for the new version to be served.
  async function followAdapting(name) {
    state.adapting = true;
    document.body.dataset.adapt = "running";
    adaptButton.disabled = true;
    let job = null;
    try {
      for (;;) {
        const response = await fetch(adaptUrl());
        job = await response.json();
        if (!response.ok) throw new Error(job.error || response.statusText);
        if (job.state !== "running") break;
        sayAdapt("Adapting to " + job.digits + " digits (" + Math.round(job.seconds) + " s)… " + job.last_line);
        await pause(POLL_MS);
      }
      if (job.state === "written") {
        const model = state.models.find((each) => each.name === name);
        if (model && !model.reloads) {
          sayAdapt("Wrote version " + job.written + "; restart the server to serve it. " + job.last_line, "saved");
        } else {
          sayAdapt("Wrote version " + job.written + "; loading it…");
          const deadline = Date.now() + SERVED_WITHIN_MS;
          while (job.serving < job.written && Date.now() < deadline) {
            await pause(POLL_MS);
            job = await (await fetch(adaptUrl())).json();
          }
          if (job.serving >= job.written) {
            showVersion(job.serving);
            sayAdapt("Now serving version " + job.serving + ", adapted to your digits. Draw again to try it.", "saved");
            if (state.strokes.length) read();
          } else {
            sayAdapt("Wrote version " + job.written + ", but the server has not loaded it; see its log.", "error");
          }
        }
      } else if (job.state === "not written") {
        sayAdapt("Kept version " + job.serving + ": " + job.last_line);
      } else {
        sayAdapt("Adapting failed: " + job.last_line, "error");
      }
    } catch (error) {
      sayAdapt("Lost track of the adaptation: " + error.message, "error");
    } finally {
      state.adapting = false;
      document.body.dataset.adapt = job ? job.state : "failed";
      showCollected(state.model.collected);
    }
  }

  adaptButton.addEventListener("click", startAdapting);

  function showVersion(version) {
    state.model.version = version;
    about.textContent =
      state.model.name + ", version " + version + " (" + state.model.format + "); " +
      "collected digits go to " + state.model.collect + ".";
    document.body.dataset.version = String(version);
  }

  // Models.

  function chooseModel(name) {
    state.model = state.models.find((model) => model.name === name) || state.models[0];
    select.value = state.model.name;
    buildBars(state.model.classes);
    buildWrongButtons(state.model.classes);
    seenCaption.textContent = "what the model sees (" + state.model.image_shape.join("×") + ")";
    showVersion(state.model.version);
    adaptCommand.textContent = state.model.adapt_command;
    sayAdapt(state.model.collect_error || "", state.model.collect_error ? "error" : "");
    showCollected(state.model.collected);
    if (state.model.adapting && !state.adapting) followAdapting(state.model.name);
    read();
  }

  async function start() {
    fitPad();
    new ResizeObserver(fitPad).observe(pad);
    try {
      const response = await fetch("api/models");
      const answer = await response.json();
      if (!response.ok) throw new Error(answer.error || response.statusText);
      state.models = answer.models;
    } catch (error) {
      say("Cannot list the served models: " + error.message, "error");
      return;
    }
    for (const model of state.models) {
      const option = document.createElement("option");
      option.value = model.name;
      option.textContent = model.name;
      select.append(option);
    }
    chooser.hidden = state.models.length < 2;
    select.addEventListener("change", () => chooseModel(select.value));
    chooseModel(state.models[0].name);
    document.body.dataset.ready = "true";
  }

  start();
})();
