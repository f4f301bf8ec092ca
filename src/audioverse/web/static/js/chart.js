// A bar chart of listening per day: bars drawn as SVG by our own code, labels as text beside it.
//
// The bars stretch to any width (preserveAspectRatio none); the dates and the scale are HTML, so they
// keep a readable size on a phone and on a wide screen alike. No inline styles: classes only.

import { h } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 300;
const HEIGHT = 100;

function svg(tag, attrs = {}) {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) element.setAttribute(name, String(value));
  return element;
}

export function listeningChart(days) {
  // The scale ends on a whole minute; bars rise from the axis to at most the top line.
  const max = 60 * Math.max(1, Math.ceil(Math.max(0, ...days.map((day) => day.seconds)) / 60));
  const slot = WIDTH / Math.max(days.length, 1);
  const totalMinutes = Math.round(days.reduce((sum, day) => sum + day.seconds, 0) / 60);
  const chart = svg("svg", {
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
    preserveAspectRatio: "none",
    class: "chart",
    role: "img",
    "aria-label": `Minutes listened on each of the last ${days.length} days: ${totalMinutes} minutes in all`,
  });
  chart.append(svg("line", { x1: 0, y1: 0.5, x2: WIDTH, y2: 0.5, class: "grid" }));
  days.forEach((day, index) => {
    const barHeight = (HEIGHT * day.seconds) / max;
    const bar = svg("rect", {
      x: index * slot + slot * 0.15,
      y: HEIGHT - barHeight,
      width: slot * 0.7,
      height: barHeight,
      class: "bar",
    });
    const title = svg("title");
    title.textContent = `${day.date}: ${Math.round(day.seconds / 60)} min`;
    bar.append(title);
    chart.append(bar);
  });
  chart.append(svg("line", { x1: 0, y1: HEIGHT - 0.5, x2: WIDTH, y2: HEIGHT - 0.5, class: "axis" }));
  const first = days.length ? String(days[0].date).slice(5) : "";
  const last = days.length ? String(days[days.length - 1].date).slice(5) : "";
  return h("div", { class: "chart-box" },
    h("span", { class: "chart-scale", "aria-hidden": "true" }, `${max / 60} min`),
    chart,
    h("div", { class: "chart-dates", "aria-hidden": "true" }, h("span", {}, first), h("span", {}, last)));
}
