// Report charts (Apache ECharts) and the report builder's drag and drop.
// A chart element carries its spec in data-chart: {type, categories,
// series: [{name, data, drill}]}; clicking a point opens its records.
(function () {
  "use strict";

  function compact(value) {
    return new Intl.NumberFormat(document.documentElement.lang || "en", { notation: "compact" }).format(value);
  }

  function option(spec) {
    const tooltip = { trigger: spec.type === "pie" || spec.type === "funnel" ? "item" : "axis" };
    if (spec.type === "pie" || spec.type === "funnel") {
      const first = spec.series[0] || { data: [], drill: [] };
      const data = spec.categories.map((name, i) => ({ name: name, value: first.data[i], drill: first.drill[i] }));
      const series = spec.type === "pie"
        ? { type: "pie", radius: ["35%", "70%"], data: data, label: { formatter: "{b}: {d}%" } }
        : { type: "funnel", sort: "none", data: data, left: "10%", width: "80%",
            label: { formatter: (p) => p.name + ": " + compact(p.value) } };
      return { tooltip: tooltip, series: [Object.assign({ name: first.name }, series)] };
    }
    const axes = spec.series.some((s) => s.axis === 1) ? 2 : 1;
    const yAxis = [{ type: "value", name: spec.axis || undefined, axisLabel: { formatter: compact } }];
    if (axes === 2) yAxis.push({ type: "value", splitLine: { show: false }, axisLabel: { formatter: compact } });
    return {
      tooltip: tooltip,
      legend: spec.series.length > 1 ? { top: 0 } : undefined,
      grid: { left: 8, right: 16, top: spec.series.length > 1 || spec.axis ? 36 : 12, bottom: 8, containLabel: true },
      xAxis: { type: "category", data: spec.categories, axisLabel: { hideOverlap: true } },
      yAxis: yAxis,
      series: spec.series.map((s) => ({
        name: s.name, type: spec.type === "line" ? "line" : "bar", data: s.data, yAxisIndex: s.axis || 0,
        drill: s.drill, emphasis: { focus: "series" },
      })),
    };
  }

  function draw(root) {
    if (!window.echarts) return;
    root.querySelectorAll("[data-chart]").forEach((el) => {
      if (el.dataset.drawn) return;
      el.dataset.drawn = "1";
      const spec = JSON.parse(el.dataset.chart);
      const chart = window.echarts.init(el, null, { renderer: "svg" });
      chart.setOption(option(spec));
      chart.on("click", (params) => {
        const drill = params.data && params.data.drill
          ? params.data.drill
          : (spec.series[params.seriesIndex] || {}).drill?.[params.dataIndex];
        if (drill) window.location.href = drill;
      });
      new ResizeObserver(() => chart.resize()).observe(el);
    });
  }

  // --- the builder ------------------------------------------------------------------
  function zoneItem(zone, source) {
    const key = zone.dataset.key;
    const li = document.createElement("li");
    li.className = "zone-item";
    li.dataset.path = source.dataset.path;
    const grip = document.createElement("span");
    grip.className = "grip";
    grip.setAttribute("aria-hidden", "true");
    grip.textContent = "⋮⋮";
    const label = document.createElement("span");
    label.className = "zone-label";
    label.textContent = source.dataset.label;
    const path = document.createElement("input");
    path.type = "hidden"; path.name = key; path.value = source.dataset.path;
    li.append(grip, label, path);
    if (source.dataset.date) {
      const by = document.createElement("select");
      by.name = key + "_by";
      by.setAttribute("aria-label", document.getElementById("bucket-options").dataset.label || "by");
      by.innerHTML = document.getElementById("bucket-options").innerHTML;
      li.append(by);
    } else {
      const by = document.createElement("input");
      by.type = "hidden"; by.name = key + "_by"; by.value = "";
      li.append(by);
    }
    const remove = document.createElement("button");
    remove.type = "button"; remove.className = "link remove"; remove.textContent = "✕";
    remove.setAttribute("aria-label", "✕ " + source.dataset.label);
    li.append(remove);
    return li;
  }

  function changed(form) {
    window.htmx && window.htmx.trigger(form, "zones-changed");
  }

  function place(form, zone, source) {
    const max = Number(zone.dataset.max || 0);
    if (max && zone.children.length >= max) zone.firstElementChild.remove();
    zone.append(zoneItem(zone, source));
    changed(form);
  }

  function addMeasure(form, path) {
    const list = document.getElementById("measures");
    const row = list.querySelector(".measure").cloneNode(true);
    row.querySelector("[name=measure_function]").value = path ? "sum" : "count";
    row.querySelector("[name=measure_field]").value = path || "";
    list.append(row);
    changed(form);
  }

  function builder() {
    const form = document.getElementById("report-form");
    if (!form) return;
    const palette = document.getElementById("palette");
    palette.addEventListener("click", (event) => {
      const button = event.target.closest("button[data-to]");
      if (!button) return;
      const item = button.closest(".palette-item");
      if (button.dataset.to === "measures") addMeasure(form, item.dataset.path);
      else place(form, document.getElementById(button.dataset.to), item);
    });
    form.addEventListener("click", (event) => {
      const remove = event.target.closest("button.remove");
      if (!remove) return;
      const item = remove.closest("li");
      if (item.classList.contains("measure") && item.parentElement.children.length === 1) return;
      item.remove();
      changed(form);
    });
    document.getElementById("add-measure").addEventListener("click", () => addMeasure(form, ""));
    if (!window.Sortable) return;
    window.Sortable.create(palette, { group: { name: "fields", pull: "clone", put: false }, sort: false });
    form.querySelectorAll(".zone").forEach((zone) => {
      window.Sortable.create(zone, {
        group: { name: "fields", put: true }, animation: 150, handle: ".grip, .zone-label",
        onAdd: (event) => {
          const source = event.item;
          source.remove();
          const at = event.newIndex;
          const max = Number(zone.dataset.max || 0);
          if (max && zone.children.length >= max) zone.firstElementChild.remove();
          zone.insertBefore(zoneItem(zone, source), zone.children[at] || null);
          changed(form);
        },
        onUpdate: () => changed(form),
      });
    });
  }

  document.addEventListener("DOMContentLoaded", () => { draw(document); builder(); });
  document.addEventListener("htmx:afterSwap", (event) => draw(event.target));
})();
