// Loom's generated pages: small enhancements on top of server-rendered
// HTML and htmx. Every text from data is set with textContent, never HTML.
(function () {
  "use strict";

  function csrfToken() {
    try { return JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRF-Token"] || ""; }
    catch (e) { return ""; }
  }

  // Forms answer 409/412/422 with the form and its errors: show them.
  if (window.htmx) {
    htmx.config.responseHandling = [
      { code: "204", swap: false },
      { code: "[23]..", swap: true },
      { code: "(409|412|422)", swap: true, error: false },
      { code: "[45]..", swap: false, error: true },
      { code: "...", swap: false },
    ];
  }

  // --- live form state: visible / required / read only, computed values -----
  function applyState(detail) {
    var form = document.getElementById("record-form");
    if (!form || !detail) return;
    var fields = detail.fields || {};
    Object.keys(fields).forEach(function (name) {
      var box = form.querySelector('.field[data-field="' + CSS.escape(name) + '"]');
      if (!box) return;
      var s = fields[name];
      box.hidden = !s[0];
      var marker = box.querySelector(".req");
      if (marker) marker.hidden = !s[1];
      box.querySelectorAll("input:not([type=hidden]), select, textarea").forEach(function (el) {
        if (s[1]) el.setAttribute("aria-required", "true"); else el.removeAttribute("aria-required");
        el.disabled = !!s[2];
      });
      var set = box.querySelector("fieldset");
      if (set) set.disabled = !!s[2];
    });
    var computed = detail.computed || {};
    Object.keys(computed).forEach(function (name) {
      var out = form.querySelector('[data-computed="' + CSS.escape(name) + '"]');
      if (out) out.textContent = computed[name] || "—";
    });
  }
  document.addEventListener("loom:state", function (e) { applyState(e.detail); });

  // --- dependent picklists: a field's options narrowed by another's value ---
  function chosen(box) {
    var picked = box.querySelector("input:checked, select");
    return picked ? picked.value : "";
  }
  function narrow(form) {
    form.querySelectorAll(".field[data-depends-on]").forEach(function (box) {
      var control = form.querySelector('.field[data-field="' + CSS.escape(box.dataset.dependsOn) + '"]');
      var parent = control ? chosen(control) : "";
      box.querySelectorAll("[data-parents]").forEach(function (el) {
        var out = parent !== "" && el.dataset.parents.split(" ").indexOf(parent) < 0;
        el.hidden = out;
        if (el.tagName === "OPTION") { el.disabled = out; if (out && el.selected) el.parentNode.value = ""; }
        else {
          var input = el.querySelector("input");
          if (out && input.checked) {
            input.checked = false;
            var none = box.querySelector('input[value=""]');
            if (none) none.checked = true;
          }
        }
      });
    });
  }
  document.addEventListener("change", function (e) {
    var form = e.target.closest && e.target.closest("#record-form");
    if (form && form.querySelector(".field[data-depends-on]")) narrow(form);
  }, true);
  function narrowAll() { var form = document.getElementById("record-form"); if (form) narrow(form); }
  document.addEventListener("htmx:afterSettle", narrowAll);
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", narrowAll); else narrowAll();

  // Fields the user has left get their errors shown on blur.
  document.addEventListener("focusout", function (e) {
    var box = e.target.closest && e.target.closest("#record-form .field");
    if (!box) return;
    var touched = document.querySelector('#record-form input[name="_touched"]');
    if (!touched || touched.value === "*") return;
    var names = touched.value ? touched.value.split(",") : [];
    if (names.indexOf(box.dataset.field) < 0) names.push(box.dataset.field);
    touched.value = names.join(",");
  }, true);
  // A submit supersedes pending checks. Checks queue behind each other
  // (hx-sync "queue last") instead of aborting, and an answer for a form
  // that was submitted or replaced meanwhile is dropped: an aborted request
  // would be logged as an error by htmx.
  document.addEventListener("submit", function (e) {
    var live = e.target.querySelector && e.target.querySelector(".form-live");
    if (live) live.dataset.submitted = "true";
  }, true);
  document.addEventListener("htmx:beforeRequest", function (e) {
    if (e.target.dataset && e.target.dataset.submitted) e.preventDefault();
  });
  document.addEventListener("htmx:beforeSwap", function (e) {
    var elt = e.detail.requestConfig && e.detail.requestConfig.elt;
    if (elt && (!elt.isConnected || (elt.dataset && elt.dataset.submitted))) e.detail.shouldSwap = false;
  });
  // A refused save: the summary lists the problems and focus goes to the
  // first invalid field, scrolled into view (after htmx's own scrolling).
  function focusFirstError() {
    var form = document.getElementById("record-form");
    if (form && !form.querySelector("#error-summary")) form = null;
    if (!form) {   // the admin pages' forms mark their fields the same way
      var refused = document.querySelector("form.admin-form .field.has-error");
      form = refused && refused.closest("form");
    }
    if (!form) return;
    var first = form.querySelector(".field.has-error input:not([type=hidden]), .field.has-error select, .field.has-error textarea");
    if (!first || (document.activeElement && document.activeElement !== document.body && form.contains(document.activeElement))) return;
    first.focus({ preventScroll: true });
    first.closest(".field").scrollIntoView({ block: "center" });
  }
  document.addEventListener("htmx:afterSettle", function (e) { if (e.target.id === "main") focusFirstError(); });
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", focusFirstError); else focusFirstError();
  document.addEventListener("click", function (e) {
    var link = e.target.closest && e.target.closest("#error-summary a[data-focus]");
    if (!link) return;
    var input = document.getElementById(link.dataset.focus);
    if (!input) return;
    e.preventDefault();
    input.focus({ preventScroll: true });
    input.closest(".field").scrollIntoView({ block: "center" });
  });

  // --- lookup typeahead --------------------------------------------------------
  function closeLookup(box) {
    var results = box.querySelector(".lookup-results");
    if (results) results.innerHTML = "";
    var search = box.querySelector(".lookup-search");
    if (search) search.setAttribute("aria-expanded", "false");
  }
  // Focus searches, but not on the way back from a pick: its answer would
  // open the list again over the next field.
  document.addEventListener("htmx:beforeRequest", function (e) {
    var elt = e.detail && e.detail.elt;
    if (elt && elt.classList && elt.classList.contains("lookup-search") && elt.dataset.picked === elt.value) {
      e.preventDefault();
    }
  });
  document.addEventListener("htmx:afterSwap", function (e) {
    if (e.target.classList && e.target.classList.contains("lookup-results")) {
      var search = e.target.parentNode.querySelector(".lookup-search");
      if (search) search.setAttribute("aria-expanded", e.target.children.length ? "true" : "false");
    }
  });
  document.addEventListener("click", function (e) {
    var option = e.target.closest && e.target.closest(".lookup-option");
    if (option) {
      var box = option.closest(".lookup");
      var hidden = box.querySelector('input[type="hidden"]');
      hidden.value = box.dataset.kind === "related" ? option.dataset.object + ":" + option.dataset.id : option.dataset.id;
      box.querySelector(".lookup-search").value = option.dataset.label;
      box.querySelector(".lookup-search").dataset.picked = option.dataset.label;
      closeLookup(box);
      hidden.dispatchEvent(new Event("change", { bubbles: true }));
      box.querySelector(".lookup-search").focus();
      return;
    }
    document.querySelectorAll(".lookup").forEach(function (box) { if (!box.contains(e.target)) closeLookup(box); });
  });
  document.addEventListener("input", function (e) {
    // Typing in a lookup clears its choice until an option is picked; an empty box clears the link.
    if (e.target.classList && e.target.classList.contains("lookup-search")) {
      var hidden = e.target.closest(".lookup").querySelector('input[type="hidden"]');
      if (!e.target.value) hidden.value = "";
    }
  });
  document.addEventListener("keydown", function (e) {
    var box = e.target.closest && e.target.closest(".lookup");
    if (!box) return;
    var options = Array.prototype.slice.call(box.querySelectorAll(".lookup-option"));
    var index = options.indexOf(document.activeElement);
    if (e.key === "ArrowDown" && options.length) { e.preventDefault(); options[Math.min(index + 1, options.length - 1)].focus(); }
    else if (e.key === "ArrowUp" && options.length) { e.preventDefault(); if (index <= 0) box.querySelector(".lookup-search").focus(); else options[index - 1].focus(); }
    else if (e.key === "Escape") { closeLookup(box); box.querySelector(".lookup-search").focus(); }
  });

  // --- moving a record between stages (board and path bar) -----------------------
  // `from`: the value the page shows; the move is refused only when that field changed meanwhile
  function move(object, id, field, value, from) {
    return fetch("/app/" + encodeURIComponent(object) + "/" + encodeURIComponent(id) + "/move", {
      method: "PATCH",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrfToken(), "Accept": "application/json" },
      body: JSON.stringify({ field: field, value: value, from: from }),
      credentials: "same-origin",
    }).then(function (response) {
      return response.json().catch(function () { return { errors: [{ message: response.statusText }] }; })
        .then(function (body) { return { ok: response.ok, body: body }; });
    });
  }

  function showErrors(panel, errors, title) {
    panel.textContent = "";
    if (!errors || !errors.length) return;
    var box = document.createElement("div");
    box.className = "notice error";
    if (title) { var h = document.createElement("p"); h.className = "notice-title"; h.textContent = title; box.appendChild(h); }
    var list = document.createElement("ul");
    errors.forEach(function (err) {
      var item = document.createElement("li");
      var text = document.createElement("span");
      text.textContent = (err.label ? err.label + ": " : "") + err.message;
      item.appendChild(text);
      if (err.fix) {
        var link = document.createElement("a");
        link.href = err.fix;
        link.className = "fix";
        link.textContent = panel.dataset.fix || "Fix it";
        item.appendChild(document.createTextNode(" "));
        item.appendChild(link);
      }
      list.appendChild(item);
    });
    box.appendChild(list);
    panel.appendChild(box);
  }

  function updateColumns(board, columns) {
    if (!columns) return;
    board.querySelectorAll(".column").forEach(function (col) {
      var data = columns[col.dataset.value] || { count: 0, sum: null };
      var count = col.querySelector(".col-count");
      if (count) { count.textContent = data.count; count.dataset.count = data.count; }
      var sum = col.querySelector(".col-sum");
      if (sum && data.sum !== null && data.sum !== undefined) sum.textContent = data.sum;
      else if (sum && sum.dataset.zero) sum.textContent = sum.dataset.zero;
    });
  }

  function initBoard(page) {
    var object = page.dataset.object, field = page.dataset.field;
    var panel = document.getElementById("board-errors");
    panel.dataset.fix = page.dataset.fixLabel || panel.dataset.fix || "Fix it";
    var lists = page.querySelectorAll(".cards");

    function drop(card, from, to, oldIndex) {
      // Leaving a won or lost column reopens the record: never by one stray key or drag.
      if (from.dataset.closed && !window.confirm(page.dataset.reopen)) {
        from.insertBefore(card, from.children[oldIndex] || null);
        card.focus();
        return;
      }
      card.classList.add("moving");
      move(object, card.dataset.id, field, to.dataset.value, from.dataset.value || null).then(function (result) {
        card.classList.remove("moving");
        if (result.ok) {
          panel.textContent = "";
          updateColumns(page, result.body.columns);
          card.focus();
        } else {
          from.insertBefore(card, from.children[oldIndex] || null);  // snap back
          var title = card.querySelector(".title");
          showErrors(panel, result.body.errors, (page.dataset.failed || "") + " " + (title ? title.textContent : ""));
          card.focus();
        }
      });
    }

    if (window.Sortable) {
      lists.forEach(function (list) {
        Sortable.create(list, {
          group: "board-" + object, animation: 150, ghostClass: "ghost", forceFallback: true, fallbackTolerance: 3,
          onEnd: function (evt) { if (evt.from !== evt.to) drop(evt.item, evt.from, evt.to, evt.oldIndex); },
        });
      });
    }
    // Keyboard: arrow keys move the focused card to the next column.
    page.addEventListener("keydown", function (e) {
      var card = e.target.closest && e.target.closest(".card-item");
      if (!card || (e.key !== "ArrowLeft" && e.key !== "ArrowRight")) return;
      e.preventDefault();
      var columns = Array.prototype.slice.call(lists);
      var from = card.parentNode, at = columns.indexOf(from);
      var to = columns[at + (e.key === "ArrowRight" ? 1 : -1)];
      if (!to) return;
      var oldIndex = Array.prototype.indexOf.call(from.children, card);
      to.insertBefore(card, to.firstChild);
      drop(card, from, to, oldIndex);
    });
  }

  function initPath(bar) {
    var panel = bar.querySelector(".move-errors");
    panel.dataset.fix = bar.dataset.fixLabel || "Fix it";
    bar.addEventListener("click", function (e) {
      var step = e.target.closest(".path-step");
      if (!step || step.disabled) return;
      if (bar.dataset.reopen && !window.confirm(bar.dataset.reopen)) return;
      move(bar.dataset.object, bar.dataset.id, bar.dataset.field, step.dataset.value,
           bar.dataset.current || null).then(function (result) {
        if (result.ok) window.location.reload();
        else showErrors(panel, result.body.errors, bar.dataset.failed || "");
      });
    });
  }

  // --- lists: bulk selection --------------------------------------------------------
  function initList(page) {
    var bulk = page.querySelector("#bulk");
    function refresh() {
      var checked = bulk.querySelectorAll(".row-check:checked").length;
      var label = bulk.querySelector(".selected-count");
      label.textContent = checked ? label.dataset.template.replace("%(n)s", checked) : "";
      bulk.querySelector("[data-bulk-delete]").disabled = !checked;
      var merge = bulk.querySelector("[data-bulk-merge]");
      if (merge) merge.disabled = checked < 2 || checked > 3;
    }
    bulk.addEventListener("change", function (e) {
      if (e.target.classList.contains("select-all")) {
        bulk.querySelectorAll(".row-check").forEach(function (box) { box.checked = e.target.checked; });
      }
      refresh();
    });
    document.addEventListener("htmx:afterSwap", refresh);
  }

  // --- "Build a filter", on lists and in the report builder ------------------------
  function initFilterBuilder(builder) {
    var fields = JSON.parse(builder.querySelector(".builder-fields").textContent);
    var opNames = JSON.parse(builder.querySelector(".builder-ops").textContent);
    var rows = builder.querySelector(".builder-rows");
    var template = builder.querySelector(".builder-row-template");
    function opsFor(kind) {
      if (kind === "text" || kind === "long_text" || kind === "email" || kind === "phone" || kind === "url" || kind === "auto_number")
        return ["contains", "==", "!=", "blank", "not_blank"];
      if (kind === "picklist" || kind === "stage" || kind === "lookup" || kind === "boolean") return ["==", "!=", "blank", "not_blank"];
      return ["==", "!=", ">", ">=", "<", "<=", "blank", "not_blank"];
    }
    function fill(row) {
      var f = fields[row.querySelector(".b-field").selectedIndex];
      var ops = row.querySelector(".b-op");
      ops.textContent = "";
      opsFor(f.kind).forEach(function (op) { var o = document.createElement("option"); o.value = op; o.textContent = opNames[op] || op; ops.appendChild(o); });
      var old = row.querySelector(".b-value");
      var input;
      if (f.options || f.kind === "boolean") {
        input = document.createElement("select");
        (f.options || [{ value: "True", label: "✓" }, { value: "False", label: "✗" }]).forEach(function (opt) {
          var o = document.createElement("option"); o.value = opt.value; o.textContent = opt.label; input.appendChild(o);
        });
      } else {
        input = document.createElement("input");
        input.type = f.kind === "date" ? "date" : "text";
        if (["integer", "decimal", "currency", "percent"].indexOf(f.kind) >= 0) input.inputMode = "decimal";
      }
      input.className = "b-value";
      input.setAttribute("aria-label", old.getAttribute("aria-label"));
      old.replaceWith(input);
    }
    function addRow() {
      var row = template.content.firstElementChild.cloneNode(true);
      var select = row.querySelector(".b-field");
      fields.forEach(function (f) { var o = document.createElement("option"); o.value = f.name; o.textContent = f.label; select.appendChild(o); });
      select.addEventListener("change", function () { fill(row); });
      rows.appendChild(row);
      fill(row);
      select.focus();
    }
    function quote(text) { return "'" + String(text).replace(/\\/g, "\\\\").replace(/'/g, "\\'") + "'"; }
    function literal(f, value) {
      if (f.kind === "boolean") return value === "True" ? "True" : "False";
      if (["integer", "decimal", "currency", "percent"].indexOf(f.kind) >= 0) {
        var n = String(value).replace(/[,\s¥]/g, "");
        return /^-?\d+(\.\d+)?$/.test(n) ? n : quote(value);
      }
      if (f.kind === "date" && /^\d{4}-\d{2}-\d{2}$/.test(value)) {
        var p = value.split("-"); return "date(" + parseInt(p[0], 10) + ", " + parseInt(p[1], 10) + ", " + parseInt(p[2], 10) + ")";
      }
      return quote(value);
    }
    function expression() {
      var parts = [];
      rows.querySelectorAll(".builder-row").forEach(function (row) {
        var f = fields[row.querySelector(".b-field").selectedIndex];
        var op = row.querySelector(".b-op").value, value = row.querySelector(".b-value").value;
        if (value.trim() === "" && op !== "blank" && op !== "not_blank") return;   // a condition left empty
        if (op === "blank") parts.push("is_blank(" + f.name + ")");
        else if (op === "not_blank") parts.push("not is_blank(" + f.name + ")");
        else if (op === "contains") parts.push("contains(" + f.name + ", " + quote(value) + ")");
        else parts.push(f.name + " " + op + " " + literal(f, value));
      });
      return parts.join(" and ");
    }
    builder.querySelector("[data-builder-add]").addEventListener("click", addRow);
    builder.querySelector("[data-builder-apply]").addEventListener("click", function () {
      var text = expression();
      var box = document.getElementById(builder.dataset.target);
      var old = box.value.trim();
      box.value = old && text ? "(" + old + ") and " + text : (text || old);
      if (builder.dataset.submit !== undefined) box.form.requestSubmit();
      else box.dispatchEvent(new Event("change", { bubbles: true }));
    });
    rows.addEventListener("click", function (e) { if (e.target.closest("[data-builder-remove]")) e.target.closest(".builder-row").remove(); });
    builder.addEventListener("toggle", function () { if (builder.open && !rows.children.length) addRow(); });
  }

  // --- rich text: a contenteditable writing into the field's textarea (the server sanitises) ---
  function initRich(box) {
    var source = box.querySelector("[data-rich-source]");
    var area = box.querySelector(".rich-area");
    var toolbar = box.querySelector(".rich-toolbar");
    area.innerHTML = source.value;   // sanitised by the server before it was rendered
    source.hidden = true;
    area.hidden = false;
    if (source.disabled) { area.contentEditable = "false"; return; }   // read only here: shown, not edited
    toolbar.hidden = false;
    // new lines as paragraphs (the sanitiser keeps <p>, not the <div> browsers write by default)
    area.addEventListener("focus", function () { document.execCommand("defaultParagraphSeparator", false, "p"); });
    area.addEventListener("input", function () { source.value = area.innerHTML; });
    toolbar.addEventListener("click", function (e) {
      var button = e.target.closest("[data-cmd]");
      if (!button) return;
      var value = null;
      if (button.dataset.ask) {
        value = window.prompt(button.dataset.ask, "https://");
        if (!value) return;
      }
      area.focus();
      document.execCommand(button.dataset.cmd, false, value);
      source.value = area.innerHTML;
    });
  }

  function init() {
    document.querySelectorAll("[data-rich]").forEach(initRich);
    var board = document.querySelector(".board-page");
    if (board) initBoard(board);
    var bar = document.querySelector(".pathbar");
    if (bar) initPath(bar);
    var list = document.querySelector(".list-page");
    if (list) initList(list);
    document.querySelectorAll("details.builder[data-target]").forEach(initFilterBuilder);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init); else init();
})();
