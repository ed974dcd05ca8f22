/* facetrace web UI: progressive enhancement only. Every form works without this script; with it,
   photos can be dropped onto the intake forms, are previewed with their detected faces boxed and
   their quality, and unusable photos are refused before the form is sent. */
(function () {
  "use strict";

  var SVG_NS = "http://www.w3.org/2000/svg";

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) { node.setAttribute(key, attrs[key]); });
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  function svgEl(tag, attrs) {
    var node = document.createElementNS(SVG_NS, tag);
    Object.keys(attrs || {}).forEach(function (key) { node.setAttribute(key, String(attrs[key])); });
    return node;
  }

  /* ---- drop zones ------------------------------------------------------------------------ */
  function Dropzone(zone) {
    this.zone = zone;
    this.kind = zone.getAttribute("data-kind") || "report";
    this.input = zone.querySelector('input[type="file"]');
    this.previews = zone.querySelector(".dz-previews");
    this.form = zone.closest("form");
    this.submit = this.form ? this.form.querySelector("[data-submit]") : null;
    this.single = !this.input.multiple;
    this.files = [];
    this.results = new Map(); // File -> check result (or {pending: true})
    this.urls = new Map(); // File -> object URL of its preview
    this.summary = el("p", { "class": "dz-summary", "role": "status" });
    zone.appendChild(this.summary);
    this.bind();
  }

  Dropzone.prototype.bind = function () {
    var self = this;
    ["dragenter", "dragover"].forEach(function (name) {
      self.zone.addEventListener(name, function (event) {
        event.preventDefault();
        self.zone.classList.add("over");
      });
    });
    ["dragleave", "drop"].forEach(function (name) {
      self.zone.addEventListener(name, function (event) {
        event.preventDefault();
        self.zone.classList.remove("over");
      });
    });
    self.zone.addEventListener("drop", function (event) {
      var dropped = Array.prototype.filter.call(event.dataTransfer.files || [], function (file) {
        return !file.type || file.type.indexOf("image/") === 0;
      });
      self.setFiles(self.single ? dropped.slice(0, 1) : self.files.concat(dropped));
    });
    self.input.addEventListener("change", function () {
      self.setFiles(Array.prototype.slice.call(self.input.files));
    });
    if (self.form) {
      self.form.addEventListener("submit", function (event) {
        var state = self.state();
        if (state.pending || state.refused) {
          event.preventDefault();
          self.summary.textContent = state.pending
            ? "Please wait: the photos are still being checked."
            : "Remove the refused photos before submitting.";
          self.summary.focus && self.summary.focus();
        }
      });
    }
  };

  Dropzone.prototype.setFiles = function (files) {
    var self = this;
    self.files.forEach(function (file) {
      if (files.indexOf(file) < 0 && self.urls.has(file)) {
        URL.revokeObjectURL(self.urls.get(file));
        self.urls.delete(file);
      }
    });
    self.files = files;
    try {
      var transfer = new DataTransfer();
      files.forEach(function (file) { transfer.items.add(file); });
      self.input.files = transfer.files;
    } catch (err) {
      /* very old browsers: the input keeps its own selection */
    }
    self.render();
    files.forEach(function (file) {
      if (!self.results.has(file)) { self.check(file); }
    });
  };

  Dropzone.prototype.check = function (file) {
    var self = this;
    self.results.set(file, { pending: true });
    var body = new FormData();
    body.append("photo", file, file.name);
    fetch("/intake/check-photo?kind=" + encodeURIComponent(self.kind), {
      method: "POST",
      body: body,
      credentials: "same-origin",
      headers: { "X-CSRF-Token": csrfToken(), "Accept": "application/json" }
    }).then(function (response) {
      return response.json().then(function (data) {
        if (!response.ok) {
          var message = data && data.error ? data.error.message : "the photo could not be checked";
          return { usable: false, reason: message, faces: [] };
        }
        return data;
      });
    }).catch(function () {
      return { usable: false, reason: "the photo could not be checked (connection problem)", faces: [] };
    }).then(function (result) {
      self.results.set(file, result);
      self.render();
    });
  };

  Dropzone.prototype.state = function () {
    var self = this;
    var pending = 0, refused = 0;
    self.files.forEach(function (file) {
      var result = self.results.get(file);
      if (!result || result.pending) { pending += 1; } else if (!result.usable) { refused += 1; }
    });
    return { pending: pending, refused: refused };
  };

  Dropzone.prototype.remove = function (file) {
    this.setFiles(this.files.filter(function (f) { return f !== file; }));
    this.input.focus();
  };

  Dropzone.prototype.render = function () {
    var self = this;
    self.previews.textContent = "";
    self.files.forEach(function (file, index) {
      var result = self.results.get(file) || { pending: true };
      var item = el("div", { "class": "dz-item" + (result.pending ? "" : (result.usable ? " usable" : " refused")) });
      if (!self.urls.has(file)) { self.urls.set(file, URL.createObjectURL(file)); }
      var frame = el("div", { "class": "photo-frame" });
      var img = el("img", { src: self.urls.get(file), alt: "Preview of " + file.name });
      frame.appendChild(img);
      if (result.width && result.height) {
        var svg = svgEl("svg", {
          "class": "overlay", viewBox: "0 0 " + result.width + " " + result.height,
          preserveAspectRatio: "none", "aria-hidden": "true"
        });
        var size = Math.max(10, Math.floor(Math.max(result.width, result.height) / 14));
        (result.faces || []).forEach(function (face, n) {
          var b = face.box;
          svg.appendChild(svgEl("rect", {
            "class": "box " + (face.quality_ok ? "ok" : "weak"),
            x: b[0], y: b[1], width: b[2] - b[0], height: b[3] - b[1]
          }));
          var label = svgEl("text", { "class": "box-label", x: b[0] + 2, y: Math.max(b[1] - 4, size), "font-size": size });
          label.textContent = String(n + 1);
          svg.appendChild(label);
        });
        frame.appendChild(svg);
      }
      item.appendChild(frame);
      item.appendChild(el("p", {}, file.name));
      if (result.pending) {
        item.appendChild(el("p", { "class": "muted" }, "Checking for faces…"));
      } else {
        var faces = result.faces || [];
        if (faces.length) {
          item.appendChild(el("p", {}, faces.length + (faces.length === 1 ? " face found" : " faces found")));
          var list = el("ul");
          faces.forEach(function (face, n) {
            var text = "Face " + (n + 1) + ": quality " + Math.round(face.quality) + (face.quality_ok ? "" : " (low)");
            if (face.quality_band) { text += ", " + face.quality_band.label; }
            if (face.problems && face.problems.length) { text += " — " + face.problems.join("; "); }
            list.appendChild(el("li", {}, text));
          });
          item.appendChild(list);
        }
        if (result.note) { item.appendChild(el("p", { "class": "muted" }, result.note)); }
        if (result.usable) {
          item.appendChild(el("p", { "class": "dz-ok" }, "✓ Usable"));
        } else {
          item.appendChild(el("p", { "class": "dz-refused", "role": "alert" }, "✗ Refused: " + result.reason));
        }
      }
      var remove = el("button", { type: "button", "aria-label": "Remove " + file.name }, "Remove");
      remove.addEventListener("click", function () { self.remove(file); });
      item.appendChild(remove);
      item.setAttribute("data-index", String(index));
      self.previews.appendChild(item);
    });
    var state = self.state();
    if (!self.files.length) {
      self.summary.textContent = "";
    } else if (state.pending) {
      self.summary.textContent = "Checking " + state.pending + " photo(s)…";
    } else if (state.refused) {
      self.summary.textContent = state.refused + " photo(s) refused: remove them to continue.";
    } else {
      self.summary.textContent = self.files.length + " photo(s) ready.";
    }
    if (self.submit) { self.submit.disabled = state.pending > 0 || state.refused > 0; }
  };

  /* ---- contacts: add a row ---------------------------------------------------------------- */
  function enableContacts(fieldset) {
    var button = fieldset.querySelector("[data-add-contact]");
    if (!button) { return; }
    button.hidden = false;
    button.addEventListener("click", function () {
      var rows = fieldset.querySelectorAll("[data-contact]");
      var last = rows[rows.length - 1];
      var copy = last.cloneNode(true);
      var number = rows.length + 1;
      copy.querySelectorAll("input, select").forEach(function (field) {
        var id = field.id.replace(/_\d+$/, "_" + number);
        var label = copy.querySelector('label[for="' + field.id + '"]');
        if (label) { label.setAttribute("for", id); }
        field.id = id;
        if (field.tagName === "INPUT") { field.value = ""; } else { field.selectedIndex = 0; }
      });
      fieldset.insertBefore(copy, button);
      var first = copy.querySelector("input");
      if (first) { first.focus(); }
    });
  }

  // The faces of a lead, zoomed and panned together: whatever the examiner does to one face, the other
  // follows, so both show the same region (the crops are aligned on the eyes). Transforms only: no
  // style attribute, which the pages' Content-Security-Policy forbids.
  function ZoomGroup(root) {
    var group = this;
    this.views = Array.prototype.slice.call(root.querySelectorAll("[data-zoom]"));
    this.output = root.querySelector("#zoom-level");
    this.scale = 1; this.x = 0; this.y = 0;
    root.querySelectorAll("[data-zoom-action]").forEach(function (button) {
      button.addEventListener("click", function () {
        var action = button.getAttribute("data-zoom-action");
        if (action === "reset") { group.scale = 1; group.x = 0; group.y = 0; group.apply(); }
        else { group.zoom(action === "in" ? 1.25 : 0.8); }
      });
    });
    this.views.forEach(function (view) {
      var last = null;
      view.addEventListener("wheel", function (event) {
        event.preventDefault();
        group.zoom(event.deltaY < 0 ? 1.25 : 0.8);
      }, { passive: false });
      view.addEventListener("pointerdown", function (event) {
        last = { x: event.clientX, y: event.clientY };
        view.setPointerCapture(event.pointerId);
      });
      view.addEventListener("pointermove", function (event) {
        if (!last) { return; }
        var box = view.getBoundingClientRect();
        group.pan((event.clientX - last.x) / box.width, (event.clientY - last.y) / box.height);
        last = { x: event.clientX, y: event.clientY };
      });
      view.addEventListener("pointerup", function () { last = null; });
      view.addEventListener("pointercancel", function () { last = null; });
      view.addEventListener("keydown", function (event) {
        var moves = { ArrowLeft: [0.05, 0], ArrowRight: [-0.05, 0], ArrowUp: [0, 0.05], ArrowDown: [0, -0.05] };
        if (event.key === "+" || event.key === "=") { group.zoom(1.25); }
        else if (event.key === "-") { group.zoom(0.8); }
        else if (moves[event.key]) { group.pan(moves[event.key][0], moves[event.key][1]); }
        else { return; }
        event.preventDefault();
      });
    });
  }
  ZoomGroup.prototype.zoom = function (factor) {
    this.scale = Math.min(8, Math.max(1, this.scale * factor));
    if (this.scale > 1) {  // a sharper crop once zoomed (each one a view, audited like the first)
      this.views.forEach(function (view) {
        var img = view.querySelector("img");
        if (img && img.src.indexOf("size=800") < 0) { img.src = img.src.replace(/size=\d+/, "size=800"); }
      });
    }
    this.apply();
  };
  ZoomGroup.prototype.pan = function (dx, dy) {
    this.x += dx; this.y += dy;
    this.apply();
  };
  ZoomGroup.prototype.apply = function () {
    var limit = (this.scale - 1) / 2;  // the face always fills its frame
    this.x = Math.min(limit, Math.max(-limit, this.x));
    this.y = Math.min(limit, Math.max(-limit, this.y));
    var transform = "translate(" + (this.x * 100).toFixed(2) + "%, " + (this.y * 100).toFixed(2) + "%) scale(" + this.scale.toFixed(3) + ")";
    this.views.forEach(function (view) {
      var img = view.querySelector("img");
      if (img) { img.style.transform = transform; }
    });
    if (this.output) { this.output.textContent = Math.round(this.scale * 100) + "%"; }
  };

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-zoom-group]").forEach(function (root) { root.zoomGroup = new ZoomGroup(root); });
    document.querySelectorAll("[data-dropzone]").forEach(function (zone) { zone.dropzone = new Dropzone(zone); });
    document.querySelectorAll("[data-contacts]").forEach(enableContacts);
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
      });
    });
    document.querySelectorAll("[data-back]").forEach(function (link) {
      link.addEventListener("click", function (event) {
        if (window.history.length > 1) { event.preventDefault(); window.history.back(); }
      });
    });
  });
})();
