// digits-zoo serve: draw a digit, see what the model reads, collect the ones it gets wrong.
//
// Strokes are kept as lists of points in 0..1 coordinates, so the pad can be
// redrawn at any size (Undo, a turned phone). When a stroke ends the pad goes to
// the server as a PNG; the server converts it exactly as `digits-zoo predict`
// converts a picture and answers with the pixels the model saw, the predicted
// class and the probability of each class.
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

  // The pen's width as a fraction of the pad's side.
  const PEN_WIDTH = 0.065;

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
      confidence.textContent = "";
      showBars(null);
      showPixels(null);
      return;
    }
    const column = answer.classes.indexOf(answer.class);
    predicted.textContent = String(answer.class);
    confidence.textContent = percent(answer.probabilities[column]) + " sure";
    showBars(answer);
    showPixels(answer);
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

  // Models.

  function chooseModel(name) {
    state.model = state.models.find((model) => model.name === name) || state.models[0];
    select.value = state.model.name;
    buildBars(state.model.classes);
    buildWrongButtons(state.model.classes);
    seenCaption.textContent = "what the model sees (" + state.model.image_shape.join("×") + ")";
    about.textContent =
      state.model.name + ", version " + state.model.version + " (" + state.model.format + "); " +
      "collected digits go to " + state.model.collect + ".";
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
