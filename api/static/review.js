// bayou review UI: keyboard shortcuts, queue navigation, page viewer (zoom, pan, page switching), where
// each field is on the page (grounding outlines, barcode suggestions) and editable line-item rows.
// Plain JavaScript, no build step.
"use strict";

function typing(event) {
  const target = event.target;
  return target instanceof HTMLElement &&
    (target.isContentEditable || ["INPUT", "SELECT", "TEXTAREA"].includes(target.tagName));
}

// a focused link, button or summary answers Enter itself (follow it, press it, open it)
function onControl(event) {
  return event.target instanceof HTMLElement && event.target.closest("a, button, summary, [tabindex]") !== null;
}

function setupQueue() {
  const rows = Array.from(document.querySelectorAll("tr.queue-row"));
  if (!rows.length) return;
  let current = 0;
  const select = (index) => {
    rows[current].classList.remove("selected");
    current = Math.max(0, Math.min(rows.length - 1, index));
    rows.forEach((row) => row.removeAttribute("aria-current"));
    rows[current].classList.add("selected");
    rows[current].setAttribute("aria-current", "true");
    rows[current].scrollIntoView({ block: "nearest" });
  };
  select(0);
  rows.forEach((row, index) => row.addEventListener("click", (event) => {
    if (event.target.tagName !== "A") select(index);
  }));
  document.addEventListener("keydown", (event) => {
    if (typing(event) || event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key === "j" || event.key === "n") select(current + 1);
    else if (event.key === "k" || event.key === "p") select(current - 1);
    else if (event.key === "Enter" && !onControl(event)) window.location.href = rows[current].dataset.href;
    else return;
    event.preventDefault();
  });
}

function setupViewer() {
  const viewer = document.querySelector(".viewer");
  const image = document.getElementById("page-image");
  if (!viewer || !image) return null;
  const viewport = viewer.querySelector(".viewport");
  const boxes = document.getElementById("page-boxes");
  const state = { scale: 1, x: 0, y: 0, page: "1" };
  const apply = () => {
    image.style.transform = `translate(${state.x}px, ${state.y}px) scale(${state.scale})`;
    if (!boxes || !image.naturalWidth) return;
    // the outlines' layer covers the page as drawn, placed rather than scaled: its boxes are in percent of
    // the page, so they follow any zoom while their lines and labels keep their size
    boxes.style.left = `${state.x}px`;
    boxes.style.top = `${state.y}px`;
    boxes.style.width = `${image.naturalWidth * state.scale}px`;
    boxes.style.height = `${image.naturalHeight * state.scale}px`;
  };
  const fit = () => {
    if (!image.naturalWidth) return;
    state.scale = Math.min(viewport.clientWidth / image.naturalWidth, viewport.clientHeight / image.naturalHeight);
    state.x = (viewport.clientWidth - image.naturalWidth * state.scale) / 2;
    state.y = (viewport.clientHeight - image.naturalHeight * state.scale) / 2;
    apply();
  };
  const zoom = (factor, cx = viewport.clientWidth / 2, cy = viewport.clientHeight / 2) => {
    const scale = Math.max(0.05, Math.min(20, state.scale * factor));
    state.x = cx - (cx - state.x) * (scale / state.scale);
    state.y = cy - (cy - state.y) * (scale / state.scale);
    state.scale = scale;
    apply();
  };
  image.addEventListener("load", fit);
  if (image.complete) fit();
  window.addEventListener("resize", fit);
  viewport.addEventListener("wheel", (event) => {
    event.preventDefault();
    const box = viewport.getBoundingClientRect();
    zoom(event.deltaY < 0 ? 1.15 : 1 / 1.15, event.clientX - box.left, event.clientY - box.top);
  }, { passive: false });
  let drag = null;
  const api = { onBox: null };  // set by setupGrounding: a click (not a drag) on a field's box
  viewport.addEventListener("pointerdown", (event) => {
    const box = event.target instanceof Element ? event.target.closest(".field-box") : null;
    drag = { x: event.clientX - state.x, y: event.clientY - state.y, at: [event.clientX, event.clientY], box };
    viewport.setPointerCapture(event.pointerId);
    viewport.classList.add("dragging");
  });
  viewport.addEventListener("pointermove", (event) => {
    if (!drag) return;
    state.x = event.clientX - drag.x;
    state.y = event.clientY - drag.y;
    apply();
  });
  const stop = () => { drag = null; viewport.classList.remove("dragging"); };
  viewport.addEventListener("pointerup", (event) => {
    const clicked = drag && drag.box && Math.hypot(event.clientX - drag.at[0], event.clientY - drag.at[1]) < 4;
    const box = clicked ? drag.box : null;
    stop();
    if (box && api.onBox) api.onBox(box);
  });
  viewport.addEventListener("pointercancel", stop);
  // keyboard panning: the viewport takes focus (Tab) and the arrow keys move the page under it
  const PAN_STEP = 40;
  const PAN = { ArrowLeft: [PAN_STEP, 0], ArrowRight: [-PAN_STEP, 0], ArrowUp: [0, PAN_STEP], ArrowDown: [0, -PAN_STEP] };
  viewport.addEventListener("keydown", (event) => {
    const step = PAN[event.key];
    if (!step || event.ctrlKey || event.metaKey || event.altKey) return;
    state.x += step[0];
    state.y += step[1];
    apply();
    event.preventDefault();
  });
  viewer.querySelectorAll("[data-zoom]").forEach((button) => button.addEventListener("click", () => {
    const how = button.dataset.zoom;
    if (how === "fit") fit(); else zoom(how === "in" ? 1.25 : 0.8);
  }));
  const showBoxes = () => {
    if (boxes) boxes.querySelectorAll(".field-box").forEach((box) => { box.hidden = box.dataset.page !== state.page; });
  };
  const showPage = (number) => {
    const tab = viewer.querySelector(`.page-tab[data-page="${number}"]`);
    if (!tab || String(number) === state.page) return;
    viewer.querySelectorAll(".page-tab").forEach((other) => {
      other.classList.remove("active");
      other.setAttribute("aria-pressed", "false");
    });
    tab.classList.add("active");
    tab.setAttribute("aria-pressed", "true");
    state.page = String(number);
    image.src = `/review/documents/${viewer.dataset.document}/pages/${number}`;
    image.alt = `Page ${number}`;
    showBoxes();
  };
  viewer.querySelectorAll(".page-tab").forEach((tab) => tab.addEventListener("click", () => showPage(tab.dataset.page)));
  showBoxes();
  // a box zoomed out of sight is brought to the middle of the viewport (at "fit" every box is in sight)
  const reveal = (box) => {
    if (!image.naturalWidth || box.dataset.page !== state.page) return;
    const [left, top, width, height] = box.dataset.place.split(" ").map(Number);
    const cx = state.x + ((left + width / 2) / 100) * image.naturalWidth * state.scale;
    const cy = state.y + ((top + height / 2) / 100) * image.naturalHeight * state.scale;
    if (cx >= 0 && cx <= viewport.clientWidth && cy >= 0 && cy <= viewport.clientHeight) return;
    state.x += viewport.clientWidth / 2 - cx;
    state.y += viewport.clientHeight / 2 - cy;
    apply();
  };
  document.addEventListener("keydown", (event) => {
    if (typing(event) || event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key === "+" || event.key === "=") zoom(1.25);
    else if (event.key === "-") zoom(0.8);
    else if (event.key === "0") fit();
  });
  return Object.assign(api, { showPage, reveal });
}

// Grounding: focusing a field outlines its box on the page (turning to that page), hovering a box names
// its field, and a licence barcode's value can be taken into its field (button or "b"; approving saves it).
function setupGrounding(viewer) {
  const form = document.getElementById("approve-form");
  const status = document.getElementById("viewer-status");
  if (!form) return;
  const boxes = Array.from(document.querySelectorAll("#page-boxes .field-box"));
  const boxOf = new Map(boxes.map((box) => [box.dataset.pointer, box]));
  const controlOf = (pointer) => form.querySelector(`[name="${CSS.escape(pointer)}"]`);
  const holder = (control) => control && control.closest(".field, td");
  const nameOf = (control) => {
    const box = boxOf.get(control.name);
    if (box) return box.textContent.trim();
    const label = control.labels && control.labels[0];
    return control.getAttribute("aria-label") || (label ? label.textContent.replace("*", "").trim() : control.name);
  };
  const say = (text) => { if (status) status.textContent = text; };
  boxes.forEach((box) => {
    const [left, top, width, height] = box.dataset.place.split(" ").map(Number);
    Object.assign(box.style, { left: `${left}%`, top: `${top}%`, width: `${width}%`, height: `${height}%` });
    if (top < 6) box.classList.add("label-below");  // a label above would be cut off by the page's top
    box.addEventListener("pointerenter", () => { const h = holder(controlOf(box.dataset.pointer)); if (h) h.classList.add("box-hover"); });
    box.addEventListener("pointerleave", () => { const h = holder(controlOf(box.dataset.pointer)); if (h) h.classList.remove("box-hover"); });
  });
  let last = null;  // the field last focused: what "b" takes the barcode's value for
  const show = (control) => {
    boxes.forEach((box) => box.classList.remove("active"));
    const box = boxOf.get(control.name);
    if (box) {
      if (viewer) viewer.showPage(box.dataset.page);
      box.classList.add("active");
      if (viewer) viewer.reveal(box);
      say(`${nameOf(control)}: page ${box.dataset.page}`);
    } else if (holder(control) && holder(control).querySelector(".not-found")) {
      say(`${nameOf(control)}: not found on the page`);
    } else say("");
  };
  form.addEventListener("focusin", (event) => {
    const control = event.target.closest("[name^='/']");
    if (!control) return;
    last = control;
    show(control);
  });
  // clicking a box goes to its field (focusing it outlines the box as usual)
  if (viewer) viewer.onBox = (box) => { const control = controlOf(box.dataset.pointer); if (control) control.focus(); };

  const suggestions = Array.from(form.querySelectorAll(".suggestion[data-for]"));
  const target = (offer) => document.getElementById(offer.dataset.for);
  const taken = (offer) => {
    const control = target(offer);
    if (!control) return true;
    return control.type === "checkbox" ? String(control.checked) === offer.dataset.value : control.value === offer.dataset.value;
  };
  const mark = (offer) => offer.classList.toggle("taken", taken(offer));
  const take = (offer) => {
    const control = target(offer);
    if (!control) return;
    const value = offer.dataset.value;
    if (control.type === "checkbox") control.checked = value === "true";
    else {
      if (control.tagName === "SELECT" && !Array.from(control.options).some((o) => o.value === value)) {
        control.add(new Option(value, value));
      }
      control.value = value;
    }
    control.dispatchEvent(new Event("input", { bubbles: true }));
    control.dispatchEvent(new Event("change", { bubbles: true }));
    mark(offer);
    last = control;
    show(control);
    holder(control).scrollIntoView({ block: "nearest" });
    say(`${nameOf(control)}: the barcode's value is in the field (approve to save it)`);
  };
  suggestions.forEach((offer) => {
    mark(offer);
    offer.querySelector(".take-suggestion").addEventListener("click", () => take(offer));
    const control = target(offer);
    if (control) ["input", "change"].forEach((kind) => control.addEventListener(kind, () => mark(offer)));
  });
  document.addEventListener("keydown", (event) => {
    if (event.key !== "b" || typing(event) || event.ctrlKey || event.metaKey || event.altKey) return;
    const own = last && suggestions.find((offer) => offer.dataset.for === last.id && !taken(offer));
    const offer = own || suggestions.find((other) => !taken(other));
    if (!offer) return;
    take(offer);
    event.preventDefault();
  });
}

function setupRows() {
  document.querySelectorAll("fieldset.rows").forEach((fieldset) => {
    const body = fieldset.querySelector("tbody");
    const template = fieldset.querySelector("template.row-template");
    const pointer = fieldset.dataset.rows;
    let next = body.querySelectorAll("tr.row").length;
    // cells have no <label>: their accessible name says the column and the row's place in the table
    const renumber = () => body.querySelectorAll("tr.row").forEach((row, index) => {
      row.querySelectorAll("[data-label]").forEach((control) =>
        control.setAttribute("aria-label", `${control.dataset.label}, row ${index + 1}`));
      const remove = row.querySelector(".remove-row");
      if (remove) remove.setAttribute("aria-label", `Remove row ${index + 1}`);
    });
    fieldset.querySelector(".add-row").addEventListener("click", () => {
      const row = template.content.firstElementChild.cloneNode(true);
      // a fresh index, never reused: the server reads rows in index order and closes gaps
      row.querySelectorAll("[name], [id]").forEach((element) => {
        for (const attribute of ["name", "id"]) {
          const value = element.getAttribute(attribute);
          if (value) element.setAttribute(attribute, value.replace(`${pointer}/__i__`, `${pointer}/${next}`)
            .replace(`${pointer.replaceAll("/", "-")}-__i__`, `${pointer.replaceAll("/", "-")}-${next}`));
        }
      });
      next += 1;
      body.appendChild(row);
      renumber();
      const first = row.querySelector("input, select");
      if (first) first.focus();
    });
    fieldset.addEventListener("click", (event) => {
      const button = event.target.closest(".remove-row");
      if (!button) return;
      const row = button.closest("tr");
      // keep the keyboard's place: focus moves to the next row's remove button, else to "Add row"
      const after = row.nextElementSibling || row.previousElementSibling;
      row.remove();
      renumber();
      (after ? after.querySelector(".remove-row") : fieldset.querySelector(".add-row")).focus();
    });
  });
}

function setupDocumentKeys() {
  const approve = document.getElementById("approve-form");
  const reject = document.getElementById("reject-form");
  const reason = document.getElementById("reason");
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && typing(event)) { event.target.blur(); return; }
    if (typing(event) || event.ctrlKey || event.metaKey || event.altKey) return;
    const link = (id) => document.getElementById(id);
    if (event.key === "a" && approve && approve.querySelector("#approve")) approve.requestSubmit();
    else if (event.key === "r" && reject && reason) {
      if (reason.value.trim()) reject.requestSubmit(); else reason.focus();
    } else if (event.key === "n" && link("next-link")) window.location.href = link("next-link").href;
    else if (event.key === "p" && link("prev-link")) window.location.href = link("prev-link").href;
    else return;
    event.preventDefault();
  });
}

document.addEventListener("DOMContentLoaded", () => {
  if (document.body.classList.contains("page-queue")) setupQueue();
  if (document.body.classList.contains("page-document")) {
    setupGrounding(setupViewer());
    setupRows();
    setupDocumentKeys();
  }
});
