// The designer's behaviour: expressions checked as the admin types (the
// problem underlined at its line and column), completion of fields and
// functions, "try it" on a record, drag (or button) ordering of fields and
// picklist options, type-specific settings, and a name made from the label.
(function () {
  "use strict";
  const csrf = () => {
    const headers = document.body.getAttribute("hx-headers");
    try { return JSON.parse(headers)["X-CSRF-Token"]; } catch (e) { return ""; }
  };
  const post = (url, body) => fetch(url, {
    method: "POST", headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf()}, body: JSON.stringify(body),
  }).then((r) => r.json());

  function debounce(fn, ms) {
    let timer = null;
    return (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
  }

  // --- expressions ---------------------------------------------------------------
  function echo(pre, source, error) {
    // The source again, with the character at the error's line and column marked.
    pre.textContent = "";
    if (!error) { pre.hidden = true; return; }
    const lines = source.split("\n");
    let offset = 0;
    for (let i = 0; i < error.line - 1 && i < lines.length; i++) offset += lines[i].length + 1;
    const at = Math.min(offset + Math.max(error.column - 1, 0), source.length);
    const mark = document.createElement("mark");
    mark.className = "expr-error";
    mark.textContent = source.slice(at, at + 1) || " ";
    pre.append(source.slice(0, at), mark, source.slice(at + 1));
    pre.hidden = false;
  }

  function setupEditor(box) {
    const input = box.querySelector("textarea");
    const problem = box.querySelector(".expr-problem");
    const typeOut = box.querySelector(".expr-type");
    const pre = box.querySelector(".expr-echo");
    const list = box.querySelector(".expr-complete");
    let items = [], active = -1, token = "", asked = false;
    const objectName = () => {
      const from = box.dataset.objectFrom && document.getElementById(box.dataset.objectFrom);
      return from ? from.value : box.dataset.object;
    };

    function close() {
      // an explicit Ctrl+Space keeps the list open while typing, until it closes
      list.hidden = true; list.textContent = ""; items = []; active = -1; asked = false;
      input.setAttribute("aria-expanded", "false");
    }
    function show(found) {
      token = tokenOf();
      list.textContent = "";
      items = found;
      if (!found.length) { close(); return; }
      found.forEach((c, i) => {
        const li = document.createElement("li");
        li.id = `${list.id}-${i}`;
        li.setAttribute("role", "option");
        const name = document.createElement("span");
        name.className = "name";
        name.textContent = c.label;
        const detail = document.createElement("span");
        detail.className = "detail";
        detail.textContent = c.detail;
        li.append(name, " ", detail);
        li.addEventListener("mousedown", (e) => { e.preventDefault(); accept(i); });
        list.append(li);
      });
      active = 0;
      highlight();
      list.hidden = false;
      input.setAttribute("aria-expanded", "true");
    }
    function highlight() {
      [...list.children].forEach((li, i) => li.setAttribute("aria-selected", i === active ? "true" : "false"));
      if (active >= 0) input.setAttribute("aria-activedescendant", `${list.id}-${active}`);
    }
    function accept(i) {
      const c = items[i];
      if (!c) return;
      const end = input.selectionStart;
      const start = end - token.length;
      input.value = input.value.slice(0, start) + c.insert + input.value.slice(end);
      const caret = start + c.insert.length;
      input.setSelectionRange(caret, caret);
      close();
      run(false);
    }
    const run = (complete) => {
      const source = input.value;
      post("/designer/check", {object: objectName(), source, kind: box.dataset.kind,
                               cursor: complete || asked ? input.selectionStart : null})
        .then((answer) => {
          if (source !== input.value) return;    // an older answer
          const error = (answer.errors || [])[0];
          problem.textContent = error ? `${error.message} (${lineText(error)})` : "";
          box.classList.toggle("has-error", !!error);
          input.setAttribute("aria-invalid", error ? "true" : "false");
          echo(pre, source, error);
          typeOut.textContent = answer.type ? `→ ${answer.type}` : "";
          if (answer.completions && (answer.token || asked)) show(answer.completions); else close();
        }).catch(() => {});
    };
    const lineText = (e) => (document.documentElement.lang.startsWith("zh")
      ? `第 ${e.line} 行，第 ${e.column} 列` : `line ${e.line}, column ${e.column}`);
    const typed = debounce(() => run(true), 150);
    input.addEventListener("input", typed);
    input.addEventListener("blur", () => setTimeout(close, 100));
    input.addEventListener("keydown", (e) => {
      if (e.key === " " && e.ctrlKey) { e.preventDefault(); asked = true; run(true); return; }
      if (list.hidden) return;
      if (e.key === "ArrowDown") { e.preventDefault(); active = (active + 1) % items.length; highlight(); }
      else if (e.key === "ArrowUp") { e.preventDefault(); active = (active - 1 + items.length) % items.length; highlight(); }
      else if (e.key === "Enter" || e.key === "Tab") { e.preventDefault(); accept(active); }
      else if (e.key === "Escape") { e.preventDefault(); close(); }
    });
    list.addEventListener("mousedown", (e) => e.preventDefault());
    const tokenOf = () => { const m = input.value.slice(0, input.selectionStart).match(/[A-Za-z_][A-Za-z0-9_.]*$/); return m ? m[0] : ""; };
    input.addEventListener("keyup", () => { token = tokenOf(); });
    input.addEventListener("click", () => { token = tokenOf(); });
    if (input.value.trim()) run(false);
  }

  // --- try it ---------------------------------------------------------------------
  function setupTry(panel) {
    const button = panel.querySelector(".try-run");
    if (!button) return;
    const out = panel.querySelector(".try-result");
    button.addEventListener("click", () => {
      const source = document.getElementById(panel.dataset.source).value;
      out.textContent = "…";
      post("/designer/try", {object: panel.dataset.object, record: panel.querySelector(".try-record").value, source})
        .then((a) => {
          out.classList.toggle("error", "error" in a);
          out.textContent = "error" in a ? a.error : `= ${a.value}`;
        });
    });
  }

  // --- ordering ---------------------------------------------------------------------
  function setupOrder(form) {
    const body = form.querySelector("[data-sortable]");
    const actions = form.querySelector(".order-actions");
    const changed = () => { if (actions) actions.hidden = false; };
    if (window.Sortable) Sortable.create(body, {handle: ".drag-handle", animation: 120, onEnd: changed});
    body.addEventListener("click", (e) => {
      const row = e.target.closest("tr");
      if (e.target.classList.contains("move-up") && row.previousElementSibling) {
        row.parentNode.insertBefore(row, row.previousElementSibling); changed(); e.target.focus();
      } else if (e.target.classList.contains("move-down") && row.nextElementSibling) {
        row.parentNode.insertBefore(row.nextElementSibling, row); changed(); e.target.focus();
      }
    });
  }

  function setupOptions(box) {
    const body = box.querySelector("[data-options]");
    if (window.Sortable) Sortable.create(body, {handle: ".drag-handle", animation: 120});
    box.querySelector(".add-option").addEventListener("click", () => {
      const row = body.lastElementChild.cloneNode(true);
      row.querySelectorAll("input").forEach((i) => { i.value = i.type === "color" ? "#000000" : ""; });
      row.querySelectorAll("select").forEach((s) => { s.selectedIndex = 0; });
      body.append(row);
      row.querySelector("input[name=option_value]").focus();
    });
    body.addEventListener("click", (e) => {
      if (!e.target.classList.contains("remove-option")) return;
      if (body.children.length > 1) e.target.closest("tr").remove();
      else e.target.closest("tr").querySelectorAll("input").forEach((i) => { i.value = i.type === "color" ? "#000000" : ""; });
    });
  }

  // --- stages ------------------------------------------------------------------------
  function renumber(root, from, to) {
    // A cloned stage's inputs take the new stage's number.
    const swap = (text) => text.split(from).join(to);
    root.querySelectorAll("[name], [id], [for], [aria-describedby], [aria-controls]").forEach((el) => {
      ["name", "id", "for", "aria-describedby", "aria-controls"].forEach((attr) => {
        if (el.hasAttribute(attr)) el.setAttribute(attr, swap(el.getAttribute(attr)));
      });
    });
    root.querySelectorAll("template").forEach((t) => { t.innerHTML = swap(t.innerHTML); });
  }

  function setupStages(editor) {
    const list = editor.querySelector("[data-stages]");
    const preview = editor.querySelector("[data-path-preview]");
    const draw = () => {
      preview.textContent = "";
      list.querySelectorAll("[data-stage]").forEach((row) => {
        const li = document.createElement("li");
        li.className = `cat-${row.querySelector("[data-stage-category]").value}`;
        const step = document.createElement("span");
        step.className = "path-step";
        step.textContent = row.querySelector("[data-stage-label]").value || row.querySelector("[data-stage-value]").value || "…";
        const color = row.querySelector("[data-stage-color]").value;
        if (color && color !== "#000000") step.style.boxShadow = `inset 0 -4px 0 ${color}`;
        li.append(step);
        preview.append(li);
      });
    };
    const next = () => Math.max(-1, ...[...list.querySelectorAll("[data-stage-value]")]
      .map((i) => Number((i.name.match(/^stages-(\d+)-/) || [0, -1])[1]))) + 1;
    if (window.Sortable) Sortable.create(list, {handle: ".drag-handle", animation: 120, onEnd: draw});
    editor.addEventListener("input", draw);
    editor.addEventListener("change", draw);
    editor.querySelector(".add-stage").addEventListener("click", () => {
      const last = list.lastElementChild;
      const row = last.cloneNode(true);
      const old = last.querySelector("[data-stage-value]").name.match(/^stages-\d+-/)[0];
      renumber(row, old, `stages-${next()}-`);
      row.querySelectorAll("input, textarea").forEach((i) => {
        if (i.type === "color") i.value = "#000000"; else if (i.type !== "checkbox") i.value = "";
      });
      row.querySelectorAll("select[multiple] option").forEach((o) => { o.selected = false; });
      row.querySelector("[data-stage-category]").value = "open";      // a new stage is open, not a copy of the last
      row.querySelectorAll(".criteria-list").forEach((l) => { l.textContent = ""; });
      row.querySelectorAll(".field-error").forEach((e) => { e.textContent = ""; });
      list.append(row);
      row.querySelector("[data-stage-value]").focus();
      draw();
    });
    list.addEventListener("click", (e) => {
      const row = e.target.closest("[data-stage]");
      if (!row) return;
      if (e.target.classList.contains("remove-stage") && list.children.length > 2) { row.remove(); draw(); }
      else if (e.target.classList.contains("move-up") && row.previousElementSibling) {
        list.insertBefore(row, row.previousElementSibling); e.target.focus(); draw();
      } else if (e.target.classList.contains("move-down") && row.nextElementSibling) {
        list.insertBefore(row.nextElementSibling, row); e.target.focus(); draw();
      } else if (e.target.classList.contains("add-criterion")) {
        const box = e.target.closest("[data-criteria]");
        const items = box.querySelector(".criteria-list");
        const taken = [...items.querySelectorAll("textarea")].map((t) => Number((t.name.match(/-(\d+)-check$/) || [0, -1])[1]));
        const html = box.querySelector("template").innerHTML.split("__n__").join(String(Math.max(-1, ...taken) + 1));
        items.insertAdjacentHTML("beforeend", html);
        const added = items.lastElementChild;
        added.querySelectorAll("[data-expr]").forEach(setupEditor);
        added.querySelector("textarea").focus();
      } else if (e.target.classList.contains("remove-criterion")) {
        e.target.closest("[data-criterion]").remove();
      }
    });
    draw();
  }

  // --- layouts -----------------------------------------------------------------------
  function setupLayout(form) {
    const sortable = (list) => {
      if (window.Sortable) Sortable.create(list, {group: list.dataset.group, handle: ".drag-handle", animation: 120});
    };
    form.querySelectorAll(".layout-items").forEach(sortable);
    form.addEventListener("click", (e) => {
      const item = e.target.closest(".layout-item");
      if (e.target.classList.contains("add-section")) {
        const numbers = [...form.querySelectorAll("[data-section]")].map((s) => Number(s.dataset.section) || 0);
        const html = form.querySelector("[data-section-template]").innerHTML.split("__n__").join(String(Math.max(-1, ...numbers) + 1));
        const sections = form.querySelector("[data-sections]");
        sections.insertAdjacentHTML("beforeend", html);
        sortable(sections.lastElementChild.querySelector(".layout-items"));
        sections.lastElementChild.querySelector("input").focus();
        return;
      }
      if (!item) return;
      const list = item.parentNode;
      if (e.target.classList.contains("move-up") && item.previousElementSibling) {
        list.insertBefore(item, item.previousElementSibling); e.target.focus();
      } else if (e.target.classList.contains("move-down") && item.nextElementSibling) {
        list.insertBefore(item.nextElementSibling, item); e.target.focus();
      } else if (e.target.classList.contains("move-across")) {
        // between an area and its pool: the pool of a group is its last list
        const lists = [...form.querySelectorAll(`.layout-items[data-group="${list.dataset.group}"]`)];
        const pool = lists[lists.length - 1];
        const target = list === pool ? lists[0] : pool;
        target.append(item);
        e.target.focus();
      }
    });
  }

  // --- workflows ---------------------------------------------------------------------
  function setupWorkflow(form) {
    const list = form.querySelector("[data-actions]");
    const trigger = form.querySelector("[data-trigger]");
    const showTrigger = () => form.querySelectorAll("[data-on]").forEach((el) => {
      const on = el.dataset.on === trigger.value;
      el.hidden = !on;
      el.querySelectorAll("input, select").forEach((i) => { i.disabled = !on; });
    });
    trigger.addEventListener("change", showTrigger);
    showTrigger();
    const highest = (selector, pattern) => Math.max(-1, ...[...form.querySelectorAll(selector)]
      .map((el) => Number((el.name.match(pattern) || [0, -1])[1])));
    form.addEventListener("click", (e) => {
      const t = e.target;
      if (t.classList.contains("add-action")) {
        const kind = form.querySelector("[data-new-action]").value;
        const n = highest("input[name$='-type']", /^action-(\d+)-type$/) + 1;
        list.insertAdjacentHTML("beforeend", form.querySelector(`[data-action-template="${kind}"]`).innerHTML.split("__n__").join(String(n)));
        list.lastElementChild.querySelectorAll("[data-expr]").forEach(setupEditor);
        (list.lastElementChild.querySelector("input:not([type=hidden]), textarea, select") || t).focus();
        return;
      }
      const block = t.closest("[data-action]");
      if (t.classList.contains("add-value") && block) {
        const box = t.closest("[data-values]");
        const rows = box.querySelector(".value-list");
        const m = Math.max(-1, ...[...rows.querySelectorAll("input[name$='-key']")]
          .map((i) => Number((i.name.match(/-values-(\d+)-key$/) || [0, -1])[1]))) + 1;
        rows.insertAdjacentHTML("beforeend", box.querySelector("[data-value-template]").innerHTML.split("__m__").join(String(m)));
        rows.lastElementChild.querySelectorAll("[data-expr]").forEach(setupEditor);
        rows.lastElementChild.querySelector("input").focus();
      } else if (t.classList.contains("remove-row")) {
        t.closest("[data-value-row]").remove();
      } else if (t.classList.contains("remove-action") && block) {
        block.remove();
      } else if (t.classList.contains("move-up") && block && block.previousElementSibling) {
        list.insertBefore(block, block.previousElementSibling); t.focus();
      } else if (t.classList.contains("move-down") && block && block.nextElementSibling) {
        list.insertBefore(block.nextElementSibling, block); t.focus();
      }
    });
  }

  // --- the field form's type settings and names made from labels ----------------------
  function setupTypes(form) {
    const select = form.querySelector("[data-type-select]");
    const apply = () => form.querySelectorAll("[data-types]").forEach((el) => {
      const on = el.dataset.types.split(" ").includes(select.value);
      el.hidden = !on;
      el.querySelectorAll("input, select, textarea").forEach((i) => { i.disabled = !on; });
    });
    select.addEventListener("change", apply);
    apply();
    // a roll-up's lookup and field are picked among the summarised object's fields
    const from = form.querySelector("#in-from");
    const pick = () => ["in-via", "in-field"].forEach((id) => {
      const input = document.getElementById(id);
      if (input && from) input.setAttribute("list", `fields-of-${from.value}`);
    });
    if (from) { from.addEventListener("change", pick); pick(); }
  }

  function setupSlug(form) {
    const name = form.querySelector("input[name=name]");
    const label = form.querySelector("input[name=label_en]");
    if (!name || !label || name.value) return;
    let touched = false;
    name.addEventListener("input", () => { touched = true; });
    label.addEventListener("input", () => {
      if (touched) return;
      name.value = label.value.toLowerCase().normalize("NFKD").replace(/[\u0300-\u036f]/g, "").replace(/[^a-z0-9]+/g, "_").replace(/^_+|_+$/g, "")
        .replace(/^[0-9_]+/, "").slice(0, 63);
    });
  }

  function publishing(form) {
    // Publish through fetch so that the page can show each step as it is
    // done; the answer (the history, or the plan with its problems) then
    // replaces the page as a normal submit would.
    const button = form.querySelector("[data-busy]");
    const out = form.querySelector(".publish-progress");
    if (!button || !window.fetch) return;
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const token = Math.random().toString(36).slice(2) + Date.now().toString(36);
      const data = new FormData(form);
      data.set("progress", token);
      button.disabled = true;
      button.textContent = button.dataset.busy;
      const poll = setInterval(() => {
        fetch(`/designer/publish/progress?token=${token}`).then((r) => r.json()).then((p) => {
          if (p.total) out.textContent = `${p.done}/${p.total} · ${p.text}`;
        }).catch(() => {});
      }, 400);
      fetch(form.action, {method: "POST", body: data}).then((r) => {
        clearInterval(poll);
        if (r.redirected) { window.location.assign(r.url); return null; }
        return r.text();
      }).then((html) => {
        if (html === null) return;
        document.open(); document.write(html); document.close();
      }).catch(() => { clearInterval(poll); form.submit(); });
    });
  }

  function guard(form) {
    // Leaving a page whose form was changed and not saved asks first.
    let dirty = false;
    form.addEventListener("input", () => { dirty = true; });
    form.addEventListener("change", () => { dirty = true; });
    form.addEventListener("click", (e) => { if (e.target.closest("button[type=button]")) dirty = true; });
    form.addEventListener("submit", () => { dirty = false; });
    window.addEventListener("beforeunload", (e) => { if (dirty) { e.preventDefault(); e.returnValue = ""; } });
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("form[data-confirm]").forEach((form) => form.addEventListener("submit", (e) => {
      if (!window.confirm(form.dataset.confirm)) e.preventDefault();
    }));
    document.querySelectorAll("form[data-guard]").forEach(guard);
    document.querySelectorAll("[data-expr]").forEach(setupEditor);
    document.querySelectorAll("[data-try]").forEach(setupTry);
    document.querySelectorAll("[data-order-form]").forEach(setupOrder);
    document.querySelectorAll(".options-editor").forEach(setupOptions);
    document.querySelectorAll("[data-field-form]").forEach(setupTypes);
    document.querySelectorAll("[data-stages-editor]").forEach(setupStages);
    document.querySelectorAll("[data-layout-form]").forEach(setupLayout);
    document.querySelectorAll("[data-workflow-form]").forEach(setupWorkflow);
    document.querySelectorAll("[data-slug-form]").forEach(setupSlug);
    document.querySelectorAll(".publish-form").forEach(publishing);
  });
})();
