// Charts as inline SVG, no library: line curves (loss and metric by epoch), horizontal score bars, an epoch bar.
import {h, number, s} from "./dom.js";

const WIDTH = 480;
const HEIGHT = 220;
const PAD = {left: 48, right: 16, top: 16, bottom: 32};

// series: [{name, points: [[x, y], ...]}]; one chart, one y axis.
export function lineChart(series, {title, xLabel = "epoch", yLabel = ""} = {}) {
  const all = series.flatMap((line) => line.points).filter(([, y]) => Number.isFinite(y));
  const svg = s("svg", {viewBox: `0 0 ${WIDTH} ${HEIGHT}`, class: "chart", role: "img",
                        "aria-label": `${title}: ${series.map((l) => `${l.name} ${l.points.map(([x, y]) => `${x}: ${number(y)}`).join(", ")}`).join("; ")}`});
  if (!all.length) {
    svg.append(s("text", {x: WIDTH / 2, y: HEIGHT / 2, "text-anchor": "middle", class: "chart-empty", text: "no data yet"}));
    return figure(svg, title);
  }
  const xs = all.map(([x]) => x);
  const ys = all.map(([, y]) => y);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs, Math.min(...xs) + 1)];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (y0 === y1) [y0, y1] = [y0 - 0.5, y1 + 0.5];
  const px = (x) => PAD.left + ((x - x0) / (x1 - x0)) * (WIDTH - PAD.left - PAD.right);
  const py = (y) => HEIGHT - PAD.bottom - ((y - y0) / (y1 - y0)) * (HEIGHT - PAD.top - PAD.bottom);
  svg.append(s("line", {x1: PAD.left, y1: HEIGHT - PAD.bottom, x2: WIDTH - PAD.right, y2: HEIGHT - PAD.bottom, class: "axis"}));
  svg.append(s("line", {x1: PAD.left, y1: PAD.top, x2: PAD.left, y2: HEIGHT - PAD.bottom, class: "axis"}));
  for (const y of [y0, (y0 + y1) / 2, y1]) {
    svg.append(s("text", {x: PAD.left - 6, y: py(y) + 4, "text-anchor": "end", class: "tick", text: number(y, 2)}));
  }
  const ticks = x1 - x0 <= 10 ? Array.from({length: x1 - x0 + 1}, (_, i) => x0 + i) : [x0, Math.round((x0 + x1) / 2), x1];
  for (const x of ticks) {
    svg.append(s("text", {x: px(x), y: HEIGHT - PAD.bottom + 16, "text-anchor": "middle", class: "tick", text: String(x)}));
  }
  svg.append(s("text", {x: WIDTH - PAD.right, y: HEIGHT - 4, "text-anchor": "end", class: "tick", text: xLabel}));
  if (yLabel) svg.append(s("text", {x: 4, y: PAD.top - 4, class: "tick", text: yLabel}));
  series.forEach((line, index) => {
    const points = line.points.filter(([, y]) => Number.isFinite(y));
    const d = points.map(([x, y], i) => `${i ? "L" : "M"}${px(x).toFixed(1)},${py(y).toFixed(1)}`).join(" ");
    svg.append(s("path", {d, class: `series series-${index}`, fill: "none"}));
    for (const [x, y] of points) {
      svg.append(s("circle", {cx: px(x), cy: py(y), r: 3, class: `series-dot series-${index}`},
        s("title", {text: `${line.name}, epoch ${x}: ${number(y)}`})));
    }
  });
  const legend = h("ul", {class: "legend"}, series.map((line, index) =>
    h("li", {class: `legend-${index}`, text: line.name})));
  return figure(svg, title, legend);
}

function figure(svg, title, legend = null) {
  return h("figure", {class: "chart-figure"}, svg, h("figcaption", null, title || "", legend));
}

// scores: [{label, score}] as horizontal bars of 0..1.
export function scoreBars(scores) {
  const row = 26;
  const svg = s("svg", {viewBox: `0 0 ${WIDTH} ${Math.max(row, scores.length * row)}`, class: "bars", role: "img",
                        "aria-label": scores.map((p) => `${p.label} ${number(p.score)}`).join(", ") || "no scores"});
  scores.forEach((prediction, i) => {
    const y = i * row;
    svg.append(s("text", {x: 0, y: y + 17, class: "bar-label", text: prediction.label}));
    svg.append(s("rect", {x: 160, y: y + 4, width: 260, height: 16, class: "bar-track"}));
    svg.append(s("rect", {x: 160, y: y + 4, width: Math.max(1, 260 * prediction.score), height: 16, class: "bar"}));
    svg.append(s("text", {x: WIDTH, y: y + 17, "text-anchor": "end", class: "bar-value", text: number(prediction.score)}));
  });
  return svg;
}

// The epoch bar of a training version: a real <progress> for assistive technology, labelled.
export function epochBar(epoch, epochs) {
  return h("div", {class: "epoch-bar"},
    h("label", {text: `Epoch ${epoch ?? 0} of ${epochs ?? "?"}`},
      h("progress", {max: epochs || 1, value: epoch || 0, class: "epoch-progress"})));
}

// The per-epoch history (train_loss and the metric) as two charts.
export function historyCharts(history, metric) {
  const entries = history || [];
  const loss = {name: "train loss", points: entries.map((e) => [e.epoch, e.train_loss])};
  const validation = Object.keys(entries[0] || {}).filter((k) => k.startsWith("val") && k.includes("loss"));
  const lossSeries = [loss, ...validation.map((k) => ({name: k.replace(/_/g, " "), points: entries.map((e) => [e.epoch, e[k]])}))];
  return h("div", {class: "charts"},
    lineChart(lossSeries, {title: "Loss by epoch", yLabel: "loss"}),
    lineChart([{name: metric || "metric", points: entries.map((e) => [e.epoch, e[metric]])}],
      {title: `${metric || "Metric"} by epoch`, yLabel: metric}));
}
